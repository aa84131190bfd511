//! The readable text form of nodes (XML-like), for logs and test failures.
//!
//! `{}` writes one line; `{:#}` indents children. Byte content that is
//! printable UTF-8 is shown as text, other bytes as hex; long byte content is
//! cut after 256 bytes with its full length noted.

use std::fmt::{self, Display, Formatter, Write};

use crate::decode::{ContentRef, NodeRef};
use crate::node::{Content, Node, Value};

const MAX_SHOWN_BYTES: usize = 256;

fn escape(f: &mut Formatter<'_>, s: &str) -> fmt::Result {
    let mut last = 0;
    for (i, c) in s.char_indices() {
        let rep = match c {
            '&' => "&amp;",
            '<' => "&lt;",
            '>' => "&gt;",
            '"' => "&quot;",
            _ => continue,
        };
        f.write_str(&s[last..i])?;
        f.write_str(rep)?;
        last = i + 1;
    }
    f.write_str(&s[last..])
}

struct Escaped<T>(T);

impl<T: Display> Display for Escaped<T> {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        // Values are short; format then escape.
        let mut s = String::new();
        let _ = write!(s, "{}", self.0);
        escape(f, &s)
    }
}

fn bytes(f: &mut Formatter<'_>, b: &[u8]) -> fmt::Result {
    let shown = &b[..b.len().min(MAX_SHOWN_BYTES)];
    match std::str::from_utf8(shown) {
        Ok(s) if !s.chars().any(|c| c.is_control() && c != '\n' && c != '\t') && !s.is_empty() => {
            escape(f, s)?
        }
        _ => {
            for x in shown {
                write!(f, "{x:02x}")?;
            }
        }
    }
    if b.len() > shown.len() {
        write!(f, "…({} bytes)", b.len())?;
    }
    Ok(())
}

fn indent(f: &mut Formatter<'_>, level: usize) -> fmt::Result {
    f.write_char('\n')?;
    for _ in 0..level {
        f.write_str("  ")?;
    }
    Ok(())
}

/// What the writer needs from either node type.
trait TextNode: Sized {
    fn tag(&self) -> &str;
    fn write_attrs(&self, f: &mut Formatter<'_>) -> fmt::Result;
    /// Writes non-list content; returns the children otherwise.
    fn write_content(&self, f: &mut Formatter<'_>) -> Result<Option<Vec<Self>>, fmt::Error>;
    fn has_content(&self) -> bool;
}

fn write_node<N: TextNode>(n: &N, f: &mut Formatter<'_>, level: usize) -> fmt::Result {
    f.write_char('<')?;
    escape(f, n.tag())?;
    n.write_attrs(f)?;
    if !n.has_content() {
        return f.write_str("/>");
    }
    f.write_char('>')?;
    if let Some(children) = n.write_content(f)? {
        let pretty = f.alternate();
        for c in &children {
            if pretty {
                indent(f, level + 1)?;
            }
            write_node(c, f, level + 1)?;
        }
        if pretty && !children.is_empty() {
            indent(f, level)?;
        }
    }
    f.write_str("</")?;
    escape(f, n.tag())?;
    f.write_char('>')
}

impl TextNode for &Node {
    fn tag(&self) -> &str {
        &self.tag
    }
    fn write_attrs(&self, f: &mut Formatter<'_>) -> fmt::Result {
        for a in &self.attrs {
            f.write_char(' ')?;
            escape(f, &a.key)?;
            match &a.value {
                Value::Str(s) => {
                    f.write_str("=\"")?;
                    escape(f, s)?;
                }
                Value::Jid(j) => write!(f, "=\"{}", Escaped(j))?,
            }
            f.write_char('"')?;
        }
        Ok(())
    }
    fn write_content(&self, f: &mut Formatter<'_>) -> Result<Option<Vec<Self>>, fmt::Error> {
        match &self.content {
            Content::None => {}
            Content::Children(c) => return Ok(Some(c.iter().collect())),
            Content::Bytes(b) => bytes(f, b)?,
            Content::Str(s) => escape(f, s)?,
            Content::Jid(j) => write!(f, "{}", Escaped(j))?,
        }
        Ok(None)
    }
    fn has_content(&self) -> bool {
        !matches!(self.content, Content::None)
    }
}

impl TextNode for NodeRef<'_> {
    fn tag(&self) -> &str {
        NodeRef::tag(self)
    }
    fn write_attrs(&self, f: &mut Formatter<'_>) -> fmt::Result {
        for (k, v) in self.attrs() {
            f.write_char(' ')?;
            escape(f, k)?;
            write!(f, "=\"{}\"", Escaped(v))?;
        }
        Ok(())
    }
    fn write_content(&self, f: &mut Formatter<'_>) -> Result<Option<Vec<Self>>, fmt::Error> {
        match self.content() {
            ContentRef::None => {}
            ContentRef::Children(c) => return Ok(Some(c.collect())),
            ContentRef::Bytes(b) => bytes(f, b)?,
            ContentRef::Str(s) => escape(f, s)?,
            ContentRef::Jid(j) => write!(f, "{}", Escaped(j))?,
        }
        Ok(None)
    }
    fn has_content(&self) -> bool {
        !matches!(self.content(), ContentRef::None)
    }
}

impl Display for Node {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        write_node(&self, f, 0)
    }
}

impl Display for NodeRef<'_> {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        write_node(self, f, 0)
    }
}
