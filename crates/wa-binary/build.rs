#![allow(clippy::unwrap_used)] // build-time data checks: a broken dictionary must stop the build
//! Turns the token dictionaries (data/tokens_v*.json) into static tables:
//! the strings per byte code, and an open-addressing hash table from string to
//! code built here once, so the encoder's lookup is a hash plus one compare.

use std::fmt::Write as _;
use std::path::Path;

include!("src/token_hash.rs");

fn load(path: &Path) -> (Vec<String>, Vec<Vec<String>>) {
    let text = std::fs::read_to_string(path).expect("read token dictionary");
    let json: serde_json::Value = serde_json::from_str(&text).expect("token dictionary is JSON");
    let strings = |v: &serde_json::Value| -> Vec<String> {
        v.as_array().expect("array").iter().map(|s| s.as_str().expect("string").to_owned()).collect()
    };
    let single = strings(&json["single_byte"]);
    let double: Vec<Vec<String>> =
        json["double_byte"].as_array().expect("double_byte").iter().map(strings).collect();
    assert_eq!(single.len(), 236, "{}: single_byte must have 236 entries", path.display());
    assert_eq!(double.len(), 4);
    for d in &double {
        assert_eq!(d.len(), 256);
    }
    (single, double)
}

fn emit(out: &mut String, name: &str, single: &[String], double: &[Vec<String>]) {
    // Code space: 1..=235 single byte; 256 + d*256 + j double byte (dictionary d, index j).
    // Insert singles first, then doubles, so a string present in both resolves to the
    // double-byte form, as Baileys' TOKEN_MAP does (later entries overwrite earlier ones).
    let mut entries: Vec<(String, u16)> = Vec::new();
    for (i, s) in single.iter().enumerate().skip(1) {
        if !s.is_empty() {
            entries.push((s.clone(), i as u16));
        }
    }
    for (d, dict) in double.iter().enumerate() {
        for (j, s) in dict.iter().enumerate() {
            if !s.is_empty() {
                entries.push((s.clone(), (256 + d * 256 + j) as u16));
            }
        }
    }
    // keys: prefix word (0 = empty); meta: code | len << 16 | fingerprint << 24.
    let mut keys = vec![0u64; TOKEN_TABLE_SIZE];
    let mut meta = vec![0u32; TOKEN_TABLE_SIZE];
    let mut max_probe = 0usize;
    let mut max_len = 0usize;
    for (s, code) in &entries {
        let b = s.as_bytes();
        assert!(!b.contains(&0) && b.len() < 256, "token {s:?} unsupported");
        max_len = max_len.max(b.len());
        let prefix = prefix_word(b);
        let (mut i, fp) = token_slot(b, prefix);
        let m = u32::from(*code) | ((b.len() as u32) << 16) | (u32::from(fp) << 24);
        let mut probe = 0;
        loop {
            if keys[i] == 0 {
                keys[i] = prefix;
                meta[i] = m;
                break;
            }
            let existing = (meta[i] & 0xffff) as u16;
            if lookup_str(single, double, existing) == s {
                meta[i] = m; // overwrite: later wins
                break;
            }
            i = (i + 1) & (TOKEN_TABLE_SIZE - 1);
            probe += 1;
        }
        max_probe = max_probe.max(probe);
    }
    assert!(max_probe < 16, "token hash clusters too much ({max_probe})");

    writeln!(out, "pub(crate) static {name}_SINGLE: [&str; 236] = {single:?};").unwrap();
    writeln!(out, "pub(crate) static {name}_DOUBLE: [[&str; 256]; 4] = [").unwrap();
    for d in double {
        writeln!(out, "    {d:?},").unwrap();
    }
    writeln!(out, "];").unwrap();
    writeln!(out, "pub(crate) static {name}_KEYS: [u64; {TOKEN_TABLE_SIZE}] = {keys:?};").unwrap();
    writeln!(out, "pub(crate) static {name}_META: [u32; {TOKEN_TABLE_SIZE}] = {meta:?};").unwrap();
    writeln!(out, "pub(crate) const {name}_MAX_LEN: usize = {max_len};").unwrap();
    // The encoder tries the dictionary before packing only for strings that could be
    // a token: a packable string (nibble or hex alphabet) longer than every packable
    // token skips the lookup, and a string with '@' (no token has one) goes straight
    // to the JID split.
    let packable = |s: &str| {
        s.bytes().all(|c| c.is_ascii_digit() || c == b'-' || c == b'.')
            || s.bytes().all(|c| c.is_ascii_digit() || (b'A'..=b'F').contains(&c))
    };
    let max_packable = entries.iter().filter(|(s, _)| packable(s)).map(|(s, _)| s.len()).max().unwrap_or(0);
    assert!(entries.iter().all(|(s, _)| !s.contains('@')), "a token contains '@'; the encoder assumes none does");
    writeln!(out, "pub(crate) const {name}_MAX_PACKABLE_LEN: usize = {max_packable};").unwrap();
}

fn lookup_str<'a>(single: &'a [String], double: &'a [Vec<String>], code: u16) -> &'a str {
    if code < 256 {
        &single[code as usize]
    } else {
        let c = code as usize - 256;
        &double[c / 256][c % 256]
    }
}

fn main() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("data");
    let mut out = String::new();
    for (name, file) in [("V3", "tokens_v3.json"), ("V2", "tokens_v2.json")] {
        let path = dir.join(file);
        println!("cargo:rerun-if-changed={}", path.display());
        let (single, double) = load(&path);
        emit(&mut out, name, &single, &double);
    }
    println!("cargo:rerun-if-changed=src/token_hash.rs");
    let dest = Path::new(&std::env::var("OUT_DIR").unwrap()).join("tokens.rs");
    std::fs::write(dest, out).unwrap();
}
