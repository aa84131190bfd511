//! The owned node: what applications build and the encoder writes.

use bytes::Bytes;
use compact_str::CompactString;
use smallvec::SmallVec;

use crate::jid::{Jid, JidError};

/// An attribute value or string content: text or a JID.
///
/// Text that contains `@` is written on the wire as a JID (Baileys does the same),
/// so `Value::Str("1@s.whatsapp.net")` and the equivalent `Value::Jid` encode alike.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Value {
    /// Text.
    Str(CompactString),
    /// A JID, written in its structured wire form.
    Jid(Jid),
}

impl Value {
    /// The text, or `None` for a JID.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            Value::Jid(_) => None,
        }
    }

    /// The JID, or `None` for text.
    pub fn as_jid(&self) -> Option<&Jid> {
        match self {
            Value::Jid(j) => Some(j),
            Value::Str(_) => None,
        }
    }
}

impl std::fmt::Display for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Value::Str(s) => f.write_str(s),
            Value::Jid(j) => j.fmt(f),
        }
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Value::Str(CompactString::new(s))
    }
}
impl From<String> for Value {
    fn from(s: String) -> Self {
        Value::Str(CompactString::from(s))
    }
}
impl From<&String> for Value {
    fn from(s: &String) -> Self {
        Value::Str(CompactString::new(s))
    }
}
impl From<CompactString> for Value {
    fn from(s: CompactString) -> Self {
        Value::Str(s)
    }
}
impl From<Jid> for Value {
    fn from(j: Jid) -> Self {
        Value::Jid(j)
    }
}
impl From<&Jid> for Value {
    fn from(j: &Jid) -> Self {
        Value::Jid(j.clone())
    }
}
macro_rules! value_from_int {
    ($($t:ty),*) => {$(
        impl From<$t> for Value {
            fn from(n: $t) -> Self {
                Value::Str(compact_str::ToCompactString::to_compact_string(&n))
            }
        }
    )*};
}
value_from_int!(u8, u16, u32, u64, usize, i8, i16, i32, i64, isize);

/// One attribute.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Attr {
    /// The attribute name.
    pub key: CompactString,
    /// The attribute value.
    pub value: Value,
}

/// Attributes in wire order. Up to four are stored inline.
pub type Attrs = SmallVec<[Attr; 4]>;

/// A node's content.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub enum Content {
    /// No content (`<tag/>`).
    #[default]
    None,
    /// Child nodes (possibly none: `LIST_EMPTY`, distinct from [`Content::None`]).
    Children(Vec<Node>),
    /// Raw bytes. Reference-counted, so cloning a node or encoding it with
    /// [`crate::encode_frame`] does not copy a large payload.
    Bytes(Bytes),
    /// Text.
    Str(CompactString),
    /// A JID.
    Jid(Jid),
}

/// An owned node: `tag`, attributes in wire order, content.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Node {
    /// The tag (never empty in a valid node).
    pub tag: CompactString,
    /// Attributes in wire order.
    pub attrs: Attrs,
    /// Content.
    pub content: Content,
}

/// A typed attribute lookup failed; names the node and the attribute.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("<{node}> attribute {attr:?}: {kind}")]
pub struct AttrError {
    /// Tag of the node that was asked.
    pub node: CompactString,
    /// The attribute asked for.
    pub attr: CompactString,
    /// What was wrong.
    pub kind: AttrErrorKind,
}

/// What was wrong with an attribute.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AttrErrorKind {
    /// The node has no such attribute.
    #[error("missing")]
    Missing,
    /// The value is not an unsigned integer that fits.
    #[error("{0:?} is not an unsigned integer in range")]
    NotUnsigned(CompactString),
    /// The value is not a signed integer that fits.
    #[error("{0:?} is not an integer in range")]
    NotInteger(CompactString),
    /// The value is not `true` or `false`.
    #[error("{0:?} is not a boolean")]
    NotBool(CompactString),
    /// The value is not a valid JID.
    #[error("{value:?} is not a valid JID: {error}")]
    NotJid {
        /// The value as text.
        value: CompactString,
        /// Why it failed to parse.
        error: JidError,
    },
}

impl AttrError {
    pub(crate) fn new(node: &str, attr: &str, kind: AttrErrorKind) -> Self {
        AttrError { node: node.into(), attr: attr.into(), kind }
    }
}

pub(crate) fn parse_u64(node: &str, attr: &str, v: &str) -> Result<u64, AttrError> {
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return Err(AttrError::new(node, attr, AttrErrorKind::NotUnsigned(v.into())));
    }
    v.parse().map_err(|_| AttrError::new(node, attr, AttrErrorKind::NotUnsigned(v.into())))
}

pub(crate) fn parse_i64(node: &str, attr: &str, v: &str) -> Result<i64, AttrError> {
    let digits = v.strip_prefix('-').unwrap_or(v);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(AttrError::new(node, attr, AttrErrorKind::NotInteger(v.into())));
    }
    v.parse().map_err(|_| AttrError::new(node, attr, AttrErrorKind::NotInteger(v.into())))
}

pub(crate) fn parse_bool(node: &str, attr: &str, v: &str) -> Result<bool, AttrError> {
    match v {
        "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        _ => Err(AttrError::new(node, attr, AttrErrorKind::NotBool(v.into()))),
    }
}

pub(crate) fn parse_jid(node: &str, attr: &str, v: &str) -> Result<Jid, AttrError> {
    v.parse().map_err(|error| AttrError::new(node, attr, AttrErrorKind::NotJid { value: v.into(), error }))
}

impl Node {
    /// A node with this tag, no attributes and no content.
    pub fn new(tag: impl Into<CompactString>) -> Node {
        Node { tag: tag.into(), attrs: Attrs::new(), content: Content::None }
    }

    /// Adds an attribute (builder).
    pub fn attr(mut self, key: impl Into<CompactString>, value: impl Into<Value>) -> Node {
        self.attrs.push(Attr { key: key.into(), value: value.into() });
        self
    }

    /// Adds an attribute when `value` is `Some` (builder).
    pub fn opt_attr<V: Into<Value>>(self, key: impl Into<CompactString>, value: Option<V>) -> Node {
        match value {
            Some(v) => self.attr(key, v),
            None => self,
        }
    }

    /// Sets child nodes as the content (builder).
    pub fn children(mut self, children: impl IntoIterator<Item = Node>) -> Node {
        self.content = Content::Children(children.into_iter().collect());
        self
    }

    /// Sets bytes as the content (builder). A `Vec<u8>` or `Bytes` is taken without copying.
    pub fn bytes(mut self, bytes: impl Into<Bytes>) -> Node {
        self.content = Content::Bytes(bytes.into());
        self
    }

    /// Sets text as the content (builder).
    pub fn text(mut self, text: impl Into<CompactString>) -> Node {
        self.content = Content::Str(text.into());
        self
    }

    /// Sets a JID as the content (builder).
    pub fn jid(mut self, jid: Jid) -> Node {
        self.content = Content::Jid(jid);
        self
    }

    /// Sets or replaces an attribute in place.
    pub fn set_attr(&mut self, key: impl Into<CompactString>, value: impl Into<Value>) {
        let key = key.into();
        let value = value.into();
        match self.attrs.iter_mut().rev().find(|a| a.key == key) {
            Some(a) => a.value = value,
            None => self.attrs.push(Attr { key, value }),
        }
    }

    /// Appends a child, turning non-list content into a child list.
    pub fn push_child(&mut self, child: Node) {
        match &mut self.content {
            Content::Children(c) => c.push(child),
            other => *other = Content::Children(vec![child]),
        }
    }

    /// The value of an attribute (the last one if the key repeats, as on decode).
    pub fn get_attr(&self, key: &str) -> Option<&Value> {
        self.attrs.iter().rev().find(|a| a.key == key).map(|a| &a.value)
    }

    /// Whether the attribute is present.
    pub fn has_attr(&self, key: &str) -> bool {
        self.get_attr(key).is_some()
    }

    fn require(&self, key: &str) -> Result<&Value, AttrError> {
        self.get_attr(key).ok_or_else(|| AttrError::new(&self.tag, key, AttrErrorKind::Missing))
    }

    /// An attribute as text (a JID value is formatted).
    pub fn attr_str(&self, key: &str) -> Result<std::borrow::Cow<'_, str>, AttrError> {
        Ok(match self.require(key)? {
            Value::Str(s) => std::borrow::Cow::Borrowed(s.as_str()),
            Value::Jid(j) => std::borrow::Cow::Owned(j.to_string()),
        })
    }

    /// An optional text attribute.
    pub fn opt_attr_str(&self, key: &str) -> Option<std::borrow::Cow<'_, str>> {
        self.attr_str(key).ok()
    }

    /// An attribute as an unsigned integer.
    pub fn attr_u64(&self, key: &str) -> Result<u64, AttrError> {
        parse_u64(&self.tag, key, &self.attr_str(key)?)
    }

    /// An attribute as a signed integer.
    pub fn attr_i64(&self, key: &str) -> Result<i64, AttrError> {
        parse_i64(&self.tag, key, &self.attr_str(key)?)
    }

    /// An attribute as a boolean (`true`/`false`/`1`/`0`).
    pub fn attr_bool(&self, key: &str) -> Result<bool, AttrError> {
        parse_bool(&self.tag, key, &self.attr_str(key)?)
    }

    /// An attribute as a JID (a JID value, or text that parses as one).
    pub fn attr_jid(&self, key: &str) -> Result<Jid, AttrError> {
        match self.require(key)? {
            Value::Jid(j) => Ok(j.clone()),
            Value::Str(s) => parse_jid(&self.tag, key, s),
        }
    }

    /// The child nodes (empty unless the content is a child list).
    pub fn child_nodes(&self) -> &[Node] {
        match &self.content {
            Content::Children(c) => c,
            _ => &[],
        }
    }

    /// The first child with this tag.
    pub fn child(&self, tag: &str) -> Option<&Node> {
        self.child_nodes().iter().find(|c| c.tag == tag)
    }

    /// Follows a path of tags, first match at each level.
    pub fn child_path(&self, path: &[&str]) -> Option<&Node> {
        path.iter().try_fold(self, |n, tag| n.child(tag))
    }

    /// All children with this tag.
    pub fn children_by_tag<'s>(&'s self, tag: &'s str) -> impl Iterator<Item = &'s Node> + 's {
        self.child_nodes().iter().filter(move |c| c.tag == tag)
    }

    /// The content as bytes, if it is bytes.
    pub fn content_bytes(&self) -> Option<&[u8]> {
        match &self.content {
            Content::Bytes(b) => Some(b),
            _ => None,
        }
    }

    /// The content as text, if it is text.
    pub fn content_str(&self) -> Option<&str> {
        match &self.content {
            Content::Str(s) => Some(s),
            _ => None,
        }
    }
}
