//! wa-binary against wacore-binary 0.7 (whatsapp-rust), same inputs, same run.
//!
//! Corpus: every stanza of a real Baileys registration + login transcript
//! (data/stanzas.json), a group message fanned out to 256 participant devices,
//! and a 1 MiB media node. Encode: owned node -> frame payload (flags byte
//! included) in a fresh Vec; for wacore both its production path
//! (`marshal_auto`, one pass into a growing buffer) and its exact-size two-pass
//! path (`marshal_exact`, the contract our encoder keeps). Decode: payload body
//! -> borrowed node tree.
#![allow(clippy::unwrap_used)] // bench setup: a panic is the failure report

use std::hint::black_box;
use std::time::Duration;

use base64::Engine;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use serde_json::Value as J;

/// A library-neutral node description.
struct N {
    tag: String,
    attrs: Vec<(String, String)>,
    content: C,
}

enum C {
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
        Some(b) => C::Bytes(
            base64::engine::general_purpose::STANDARD
                .decode(b["b64"].as_str().unwrap())
                .unwrap(),
        ),
    };
    N {
        tag: v["tag"].as_str().unwrap().to_owned(),
        attrs,
        content,
    }
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
        attrs: attrs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
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
                content: C::Kids(vec![n(
                    "enc",
                    &[("v", "2"), ("type", kind)],
                    C::Bytes(body),
                )]),
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
        &[
            ("id", "71.229-3"),
            ("type", "set"),
            ("xmlns", "w:m"),
            ("to", "@s.whatsapp.net"),
        ],
        C::Kids(vec![n(
            "media",
            &[
                ("type", "image"),
                ("hash", "n2tVmYfzw3ZQWyHq0mJ4mYxgYl0dXuJMtEXCqoC8HZ0="),
            ],
            C::Bytes(pseudo_random(1 << 20, 3)),
        )]),
    )
}

struct Case {
    name: &'static str,
    ours: Vec<wa_binary::Node>,
    theirs: Vec<wacore_binary::Node>,
    /// Encoded payloads (flags byte included), ours and theirs.
    wire_ours: Vec<Vec<u8>>,
    wire_theirs: Vec<Vec<u8>>,
}

impl Case {
    fn new(name: &'static str, nodes: Vec<N>) -> Case {
        let ours: Vec<_> = nodes.iter().map(ours).collect();
        let theirs: Vec<_> = nodes.iter().map(theirs).collect();
        let wire_ours: Vec<_> = ours.iter().map(|n| wa_binary::encode(n).unwrap()).collect();
        let wire_theirs: Vec<_> = theirs
            .iter()
            .map(|n| wacore_binary::marshal::marshal_auto(n).unwrap())
            .collect();
        let same = wire_ours
            .iter()
            .zip(&wire_theirs)
            .filter(|(a, b)| a == b)
            .count();
        let bytes: usize = wire_ours.iter().map(Vec::len).sum();
        eprintln!(
            "{name}: {} nodes, {bytes} encoded bytes; byte-identical encodings: {same}/{}",
            ours.len(),
            ours.len()
        );
        Case {
            name,
            ours,
            theirs,
            wire_ours,
            wire_theirs,
        }
    }

    fn bytes(&self) -> u64 {
        self.wire_ours.iter().map(|w| w.len() as u64).sum()
    }
}

fn cases() -> Vec<Case> {
    let text = include_str!("../data/stanzas.json");
    let json: J = serde_json::from_str(text).unwrap();
    let stanzas = json["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(from_json)
        .collect();
    vec![
        Case::new("stanzas", stanzas),
        Case::new("message_256", vec![message_256()]),
        Case::new("media_1mib", vec![media_1mib()]),
    ]
}

fn bench(c: &mut Criterion) {
    for case in cases() {
        let mut g = c.benchmark_group(format!("encode/{}", case.name));
        g.throughput(Throughput::Bytes(case.bytes()));
        g.bench_function(BenchmarkId::from_parameter("wa-binary"), |b| {
            b.iter(|| {
                for n in &case.ours {
                    black_box(wa_binary::encode(black_box(n)).unwrap());
                }
            })
        });
        g.bench_function(BenchmarkId::from_parameter("wacore-binary"), |b| {
            b.iter(|| {
                for n in &case.theirs {
                    black_box(wacore_binary::marshal::marshal_auto(black_box(n)).unwrap());
                }
            })
        });
        // Their two-pass exact-size variant: the same contract as our encoder.
        g.bench_function(BenchmarkId::from_parameter("wacore-binary-exact"), |b| {
            b.iter(|| {
                for n in &case.theirs {
                    black_box(wacore_binary::marshal::marshal_exact(black_box(n)).unwrap());
                }
            })
        });
        g.finish();

        let mut g = c.benchmark_group(format!("decode/{}", case.name));
        g.throughput(Throughput::Bytes(case.bytes()));
        g.bench_function(BenchmarkId::from_parameter("wa-binary"), |b| {
            b.iter(|| {
                for w in &case.wire_ours {
                    black_box(wa_binary::decode(black_box(&w[1..])).unwrap());
                }
            })
        });
        g.bench_function(BenchmarkId::from_parameter("wacore-binary"), |b| {
            b.iter(|| {
                for w in &case.wire_theirs {
                    black_box(wacore_binary::marshal::unmarshal_ref(black_box(&w[1..])).unwrap());
                }
            })
        });
        g.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(40);
    targets = bench
}
criterion_main!(benches);
