//! Replays the Baileys-generated binary node vectors (`binary_nodes.json`,
//! `binary_random_nodes.json`): our encoding must be byte-identical, our decoding
//! must give what Baileys decodes, and the reject cases must be rejected.
//! The directory comes from `WA_VECTORS_DIR` (default: the project's tests/vectors).

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use std::collections::BTreeMap;
use std::path::PathBuf;

use base64::Engine;
use serde_json::Value as J;
use sha2::{Digest, Sha256};
use wa_binary::{
    ContentRef, JidKind, JidRef, Node, NodeRef, ValueRef, decode, encode, unpack_frame,
};

fn vectors_dir() -> PathBuf {
    match std::env::var_os("WA_VECTORS_DIR") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/vectors"),
    }
}

fn load(name: &str) -> J {
    let path = vectors_dir().join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

fn bytes_of(v: &J) -> Vec<u8> {
    if let Some(b) = v.get("b64") {
        base64::engine::general_purpose::STANDARD
            .decode(b.as_str().unwrap())
            .unwrap()
    } else if let Some(h) = v.get("hex") {
        hex::decode(h.as_str().unwrap()).unwrap()
    } else if let Some(r) = v.get("repeat") {
        hex::decode(r["hex"].as_str().unwrap())
            .unwrap()
            .repeat(r["count"].as_u64().unwrap() as usize)
    } else {
        panic!("not a bytes form: {v}")
    }
}

fn node_from_json(v: &J) -> Node {
    let mut n = Node::new(v["tag"].as_str().unwrap());
    for (k, val) in v["attrs"].as_object().unwrap() {
        n = n.attr(k.as_str(), val.as_str().unwrap());
    }
    match v.get("content") {
        None => n,
        Some(J::Array(items)) => n.children(items.iter().map(node_from_json)),
        Some(J::String(s)) => n.text(s.as_str()),
        Some(other) => n.bytes(bytes_of(other)),
    }
}

/// The shape Baileys' decoder produces, for comparison.
#[derive(Debug, PartialEq)]
struct View {
    tag: String,
    attrs: BTreeMap<String, String>,
    content: ViewContent,
}

#[derive(Debug, PartialEq)]
enum ViewContent {
    None,
    Children(Vec<View>),
    Bytes(Vec<u8>),
    BytesLen(usize),
    Str(String),
}

fn view_from_json(v: &J) -> View {
    let attrs = v["attrs"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
        .collect();
    let content = if let Some(len) = v.get("content_len") {
        ViewContent::BytesLen(len.as_u64().unwrap() as usize)
    } else {
        match v.get("content") {
            None => ViewContent::None,
            Some(J::Array(items)) => {
                ViewContent::Children(items.iter().map(view_from_json).collect())
            }
            Some(J::String(s)) => ViewContent::Str(s.clone()),
            Some(other) => ViewContent::Bytes(bytes_of(other)),
        }
    };
    View {
        tag: v["tag"].as_str().unwrap().to_owned(),
        attrs,
        content,
    }
}

/// How Baileys renders a decoded JID (it drops AD agents).
fn baileys_jid(j: &JidRef<'_>) -> String {
    match j.kind() {
        JidKind::Pair => format!("{}@{}", j.user(), j.server()),
        JidKind::Ad if j.device() != 0 => format!("{}:{}@{}", j.user(), j.device(), j.server()),
        JidKind::Ad => format!("{}@{}", j.user(), j.server()),
        JidKind::Fb => format!("{}:{}@{}", j.user(), j.device(), j.server()),
        JidKind::Interop => format!(
            "{}-{}:{}@{}",
            j.integrator(),
            j.user(),
            j.device(),
            j.server()
        ),
        _ => unreachable!(),
    }
}

fn baileys_value(v: ValueRef<'_>) -> String {
    match v {
        ValueRef::Str(s) => s.to_owned(),
        ValueRef::Jid(j) => baileys_jid(&j),
    }
}

fn view_of(n: NodeRef<'_>, expect_len_only: bool) -> View {
    let mut attrs = BTreeMap::new();
    for (k, v) in n.attrs() {
        // Repeated keys collapse, the last value winning, as in a JS object.
        attrs.insert(k.to_owned(), baileys_value(v));
    }
    let content = match n.content() {
        ContentRef::None => ViewContent::None,
        ContentRef::Children(c) => ViewContent::Children(c.map(|c| view_of(c, false)).collect()),
        ContentRef::Bytes(b) if expect_len_only => ViewContent::BytesLen(b.len()),
        ContentRef::Bytes(b) => ViewContent::Bytes(b.to_vec()),
        ContentRef::Str(s) => ViewContent::Str(s.to_owned()),
        ContentRef::Jid(j) => ViewContent::Str(baileys_jid(&j)),
    };
    View {
        tag: n.tag().to_owned(),
        attrs,
        content,
    }
}

fn expected_encoding(v: &J) -> Option<Vec<u8>> {
    if let Some(h) = v.get("encoded_hex") {
        return Some(hex::decode(h.as_str().unwrap()).unwrap());
    }
    let parts = v.get("encoded_parts")?.as_array()?;
    Some(parts.iter().flat_map(bytes_of).collect())
}

fn check_vector(v: &J) -> Result<(), String> {
    let name = v["name"].as_str().unwrap_or("?");
    let expected = expected_encoding(v);

    // Encode side.
    let ours = v.get("node").map(|nj| {
        let node = node_from_json(nj);
        let enc = encode(&node).map_err(|e| format!("{name}: encode failed: {e}"))?;
        match &expected {
            Some(exp) if &enc != exp => {
                let at = enc.iter().zip(exp).position(|(a, b)| a != b).unwrap_or(enc.len().min(exp.len()));
                return Err(format!(
                    "{name}: encoding differs at byte {at} (ours {} bytes, Baileys {} bytes)\n ours: {}\n them: {}",
                    enc.len(),
                    exp.len(),
                    hex::encode(&enc[at.saturating_sub(8)..(at + 24).min(enc.len())]),
                    hex::encode(&exp[at.saturating_sub(8)..(at + 24).min(exp.len())])
                ));
            }
            Some(_) => {}
            None => {
                let len = v["encoded_len"].as_u64().unwrap() as usize;
                let sha = hex::encode(Sha256::digest(&enc));
                if enc.len() != len || sha != v["encoded_sha256"].as_str().unwrap() {
                    return Err(format!("{name}: encoding length/hash differ ({} vs {len})", enc.len()));
                }
                let head = hex::decode(v["encoded_head_hex"].as_str().unwrap()).unwrap();
                if !enc.starts_with(&head) {
                    return Err(format!("{name}: encoding head differs"));
                }
            }
        }
        Ok(enc)
    });
    let ours = ours.transpose()?;
    let wire = match expected.or(ours) {
        Some(w) => w,
        None => return Err(format!("{name}: nothing to decode")),
    };

    // Decode side.
    if let Some(err) = v.get("error") {
        return match unpack_frame(&wire).and_then(|b| decode(&b).map(|d| d.to_node())) {
            Ok(n) => Err(format!(
                "{name}: should be rejected ({err}) but decoded to {n}"
            )),
            Err(_) => Ok(()),
        };
    }
    let body = unpack_frame(&wire).map_err(|e| format!("{name}: unpack: {e}"))?;
    let doc = decode(&body).map_err(|e| format!("{name}: decode: {e}"))?;
    let want = view_from_json(&v["decoded"]);
    let got = view_of(doc.root(), matches!(want.content, ViewContent::BytesLen(_)));
    if got != want {
        return Err(format!(
            "{name}: decoded node differs\n ours: {got:?}\n them: {want:?}"
        ));
    }
    // The owned conversion and our text form must not lose or break anything.
    let owned = doc.to_node();
    let _ = owned.to_string();
    Ok(())
}

fn run(file: &str, min: usize) {
    let data = load(file);
    let vectors = data["vectors"].as_array().unwrap();
    assert!(
        vectors.len() >= min,
        "{file}: only {} vectors",
        vectors.len()
    );
    let failures: Vec<String> = vectors
        .iter()
        .filter_map(|v| check_vector(v).err())
        .collect();
    if !failures.is_empty() {
        let shown: Vec<_> = failures
            .iter()
            .take(8)
            .map(|f| f.chars().take(1500).collect::<String>())
            .collect();
        panic!(
            "{} of {} vectors in {file} failed:\n{}",
            failures.len(),
            vectors.len(),
            shown.join("\n\n")
        );
    }
}

#[test]
fn binary_nodes_vectors() {
    run("binary_nodes.json", 36);
}

#[test]
fn binary_random_nodes_vectors() {
    run("binary_random_nodes.json", 400);
}
