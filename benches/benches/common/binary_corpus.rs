//! The corpus shared by `binary.rs` (criterion) and `binary_quick.rs` (interleaved rounds):
//! every stanza of a real Baileys registration + login transcript (`data/stanzas.json`), a
//! group message fanned out to 256 participant devices, and a 1 MiB media node, each built
//! as both libraries' owned node trees and encoded once by each (the setup reports whether
//! the encodings are byte-identical).
//!
//! Included by both bench files with `#[path]`; not a bench target itself.

use base64::Engine;
use serde_json::Value as J;

/// A library-neutral node description.
pub struct N {
    tag: String,
    attrs: Vec<(String, String)>,
    content: C,
}

pub enum C {
    None,
    Kids(Vec<N>),
    Bytes(Vec<u8>),
    Str(String),
}

fn from_json(v: &J) -> N {
    let attrs = v["attrs"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
        .collect();
    let content = match v.get("content") {
        None => C::None,
        Some(J::Array(items)) => C::Kids(items.iter().map(from_json).collect()),
        Some(J::String(s)) => C::Str(s.clone()),
        Some(b) => {
            C::Bytes(base64::engine::general_purpose::STANDARD.decode(b["b64"].as_str().unwrap()).unwrap())
        }
    };
    N { tag: v["tag"].as_str().unwrap().to_owned(), attrs, content }
}

fn ours(n: &N) -> wa_binary::Node {
    let mut node = wa_binary::Node::new(n.tag.as_str());
    for (k, v) in &n.attrs {
        node = node.attr(k.as_str(), v.as_str());
    }
    match &n.content {
        C::None => node,
        C::Kids(k) => node.children(k.iter().map(ours)),
        C::Bytes(b) => node.bytes(b.clone()),
        C::Str(s) => node.text(s.as_str()),
    }
}

fn theirs(n: &N) -> wacore_binary::Node {
    use wacore_binary::node::{Attrs, NodeContent};
    let mut attrs = Attrs::new();
    for (k, v) in &n.attrs {
        attrs.push(k.clone(), v.as_str());
    }
    let content = match &n.content {
        C::None => None,
        C::Kids(k) => Some(NodeContent::Nodes(k.iter().map(theirs).collect())),
        C::Bytes(b) => Some(NodeContent::Bytes(b.clone())),
        C::Str(s) => Some(NodeContent::String(s.as_str().into())),
    };
    wacore_binary::Node::new(n.tag.clone(), attrs, content)
}

fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn n(tag: &str, attrs: &[(&str, &str)], content: C) -> N {
    N {
        tag: tag.to_owned(),
        attrs: attrs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        content,
    }
}

fn message_256() -> N {
    let participants = (0..256u64)
        .map(|i| {
            let jid = format!("1555{:07}:{}@s.whatsapp.net", 1_000_000 + i * 37, i % 5);
            let kind = if i % 3 == 0 { "pkmsg" } else { "msg" };
            let body = pseudo_random(if kind == "pkmsg" { 420 } else { 160 }, i + 7);
            N {
                tag: "to".into(),
                attrs: vec![("jid".into(), jid)],
                content: C::Kids(vec![n("enc", &[("v", "2"), ("type", kind)], C::Bytes(body))]),
            }
        })
        .collect();
    n(
        "message",
        &[
            ("id", "3EB0C431C26A1916E0A2"),
            ("to", "120363025246125888@g.us"),
            ("type", "text"),
            ("addressing_mode", "pn"),
            ("phash", "2:NbGyQ0AAyOfq"),
        ],
        C::Kids(vec![
            n("participants", &[], C::Kids(participants)),
            n("device-identity", &[], C::Bytes(pseudo_random(153, 99))),
        ]),
    )
}

fn media_1mib() -> N {
    n(
        "iq",
        &[("id", "71.229-3"), ("type", "set"), ("xmlns", "w:m"), ("to", "@s.whatsapp.net")],
        C::Kids(vec![n(
            "media",
            &[("type", "image"), ("hash", "n2tVmYfzw3ZQWyHq0mJ4mYxgYl0dXuJMtEXCqoC8HZ0=")],
            C::Bytes(pseudo_random(1 << 20, 3)),
        )]),
    )
}

pub struct Case {
    pub name: &'static str,
    pub ours: Vec<wa_binary::Node>,
    pub theirs: Vec<wacore_binary::Node>,
    /// Encoded payloads (flags byte included), ours and theirs.
    pub wire_ours: Vec<Vec<u8>>,
    pub wire_theirs: Vec<Vec<u8>>,
}

impl Case {
    fn new(name: &'static str, nodes: Vec<N>) -> Case {
        let ours: Vec<_> = nodes.iter().map(ours).collect();
        let theirs: Vec<_> = nodes.iter().map(theirs).collect();
        let wire_ours: Vec<_> = ours.iter().map(|n| wa_binary::encode(n).unwrap()).collect();
        let wire_theirs: Vec<_> =
            theirs.iter().map(|n| wacore_binary::marshal::marshal_auto(n).unwrap()).collect();
        let same = wire_ours.iter().zip(&wire_theirs).filter(|(a, b)| a == b).count();
        let bytes: usize = wire_ours.iter().map(Vec::len).sum();
        eprintln!(
            "{name}: {} nodes, {bytes} encoded bytes; byte-identical encodings: {same}/{}",
            ours.len(),
            ours.len()
        );
        Case { name, ours, theirs, wire_ours, wire_theirs }
    }

    pub fn bytes(&self) -> u64 {
        self.wire_ours.iter().map(|w| w.len() as u64).sum()
    }
}

pub fn cases() -> Vec<Case> {
    let text = include_str!("../../data/stanzas.json");
    let json: J = serde_json::from_str(text).unwrap();
    let stanzas = json["nodes"].as_array().unwrap().iter().map(from_json).collect();
    vec![
        Case::new("stanzas", stanzas),
        Case::new("message_256", vec![message_256()]),
        Case::new("media_1mib", vec![media_1mib()]),
    ]
}
