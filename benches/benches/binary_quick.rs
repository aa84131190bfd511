//! Interleaved min-of-rounds timing of the same workloads as `binary.rs`: on a
//! shared, noisy machine the minimum over many short alternating rounds is a
//! steadier estimate of each side's cost than a median over one long run.
//! `cargo bench -p wa-benches --bench binary_quick`
//!
//! wa-binary against wacore-binary 0.7 (whatsapp-rust), same inputs, same run.
//!
//! Corpus: every stanza of a real Baileys registration + login transcript
//! (data/stanzas.json), a group message fanned out to 256 participant devices,
//! and a 1 MiB media node. Encode: owned node -> frame payload (flags byte
//! included) in a fresh Vec. Decode: payload body -> borrowed node tree.
#![allow(clippy::unwrap_used)] // bench setup: a panic is the failure report

use std::hint::black_box;
use std::time::{Duration, Instant};

use base64::Engine;
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

    fn bytes(&self) -> u64 {
        self.wire_ours.iter().map(|w| w.len() as u64).sum()
    }
}

fn cases() -> Vec<Case> {
    let text = include_str!("../data/stanzas.json");
    let json: J = serde_json::from_str(text).unwrap();
    let stanzas = json["nodes"].as_array().unwrap().iter().map(from_json).collect();
    vec![
        Case::new("stanzas", stanzas),
        Case::new("message_256", vec![message_256()]),
        Case::new("media_1mib", vec![media_1mib()]),
    ]
}

fn min_time(rounds: usize, iters: u32, mut f: impl FnMut()) -> Duration {
    let mut best = Duration::MAX;
    for _ in 0..rounds {
        let t = Instant::now();
        for _ in 0..iters {
            f();
        }
        best = best.min(t.elapsed() / iters);
    }
    best
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Alternates the two sides in short rounds; returns each side's best time per
/// iteration and the median of the per-round ratios (theirs / ours), which
/// cancels load drift on a shared machine.
fn compare(
    rounds: usize,
    iters: u32,
    mut ours: impl FnMut(),
    mut theirs: impl FnMut(),
) -> (Duration, Duration, f64) {
    let (mut bo, mut bt) = (Duration::MAX, Duration::MAX);
    let mut ratios = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let o = min_time(1, iters, &mut ours);
        let t = min_time(1, iters, &mut theirs);
        bo = bo.min(o);
        bt = bt.min(t);
        ratios.push(t.as_secs_f64() / o.as_secs_f64());
    }
    (bo, bt, median(ratios))
}

/// `WA_BINARY_ONE=<op>:<side>:<case>:<iterations>` (op `encode`/`decode`, side
/// `ours`/`theirs`) runs only that loop and exits: a fixed workload for
/// `valgrind --tool=callgrind`, whose instruction counts are repeatable on a
/// noisy machine (subtract a run with 0 iterations to remove the setup).
fn run_one(spec: &str) {
    let parts: Vec<&str> = spec.split(':').collect();
    let [op, side, name, iters] = parts[..] else { panic!("WA_BINARY_ONE=op:side:case:iterations") };
    let iters: u32 = iters.parse().unwrap();
    let case = cases().into_iter().find(|c| c.name == name).unwrap();
    for _ in 0..iters {
        match (op, side) {
            ("encode", "ours") => {
                for n in &case.ours {
                    black_box(wa_binary::encode(black_box(n)).unwrap());
                }
            }
            ("encode", "theirs") => {
                for n in &case.theirs {
                    black_box(wacore_binary::marshal::marshal_auto(black_box(n)).unwrap());
                }
            }
            ("decode", "ours") => {
                for w in &case.wire_ours {
                    black_box(wa_binary::decode(black_box(&w[1..])).unwrap());
                }
            }
            ("decode", "theirs") => {
                for w in &case.wire_theirs {
                    black_box(wacore_binary::marshal::unmarshal_ref(black_box(&w[1..])).unwrap());
                }
            }
            _ => panic!("unknown op/side {op}/{side}"),
        }
    }
}

fn main() {
    if let Ok(spec) = std::env::var("WA_BINARY_ONE") {
        return run_one(&spec);
    }
    // `cargo bench` passes `--bench`; ignore arguments.
    for case in cases() {
        let iters = if case.name == "media_1mib" { 10 } else { 50 };
        let mib = case.bytes() as f64 / (1024.0 * 1024.0);
        let tp = |d: Duration| mib / d.as_secs_f64();
        let (eo, et, er) = compare(
            101,
            iters,
            || {
                for n in &case.ours {
                    black_box(wa_binary::encode(black_box(n)).unwrap());
                }
            },
            || {
                for n in &case.theirs {
                    black_box(wacore_binary::marshal::marshal_auto(black_box(n)).unwrap());
                }
            },
        );
        let (_, ex, exr) = compare(
            101,
            iters,
            || {
                for n in &case.ours {
                    black_box(wa_binary::encode(black_box(n)).unwrap());
                }
            },
            || {
                for n in &case.theirs {
                    black_box(wacore_binary::marshal::marshal_exact(black_box(n)).unwrap());
                }
            },
        );
        let (d_o, dt, dr) = compare(
            101,
            iters * 4,
            || {
                for w in &case.wire_ours {
                    black_box(wa_binary::decode(black_box(&w[1..])).unwrap());
                }
            },
            || {
                for w in &case.wire_theirs {
                    black_box(wacore_binary::marshal::unmarshal_ref(black_box(&w[1..])).unwrap());
                }
            },
        );
        println!(
            "{:<12} encode: wa-binary {:>10.2?} ({:>9.1} MiB/s)  wacore {:>10.2?} ({:>9.1} MiB/s)  median ratio {:.2}x",
            case.name,
            eo,
            tp(eo),
            et,
            tp(et),
            er
        );
        println!(
            "{:<12} encode vs wacore marshal_exact: wacore {:>10.2?} ({:>9.1} MiB/s)  median ratio {:.2}x",
            case.name,
            ex,
            tp(ex),
            exr
        );
        println!(
            "{:<12} decode: wa-binary {:>10.2?} ({:>9.1} MiB/s)  wacore {:>10.2?} ({:>9.1} MiB/s)  median ratio {:.2}x",
            case.name,
            d_o,
            tp(d_o),
            dt,
            tp(dt),
            dr
        );
    }
}
