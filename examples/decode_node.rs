//! Turns binary node frames (hex or base64) into their readable text form.
//!
//! ```text
//! cargo run --example decode_node -- 00f80a1908550429165711fa0003f801f80156
//! echo 00f80a1908550429165711fa0003f801f80156 | cargo run --example decode_node
//! ```
//!
//! Each input is a frame payload: the flags byte (bit 0x02 = zlib-compressed)
//! followed by the node. Options: `--body` for input without the flags byte,
//! `--v2` for dictionary version 2, `--compact` for one line per node.

use std::io::BufRead;
use std::process::ExitCode;

use base64::Engine;
use wa::binary::{Decoder, token};

fn parse_input(s: &str) -> Result<Vec<u8>, String> {
    let s = s.trim();
    let is_hex = s.len().is_multiple_of(2) && s.bytes().all(|b| b.is_ascii_hexdigit());
    if is_hex {
        return hex::decode(s).map_err(|e| format!("bad hex: {e}"));
    }
    let engines = [
        &base64::engine::general_purpose::STANDARD,
        &base64::engine::general_purpose::STANDARD_NO_PAD,
        &base64::engine::general_purpose::URL_SAFE,
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
    ];
    engines
        .iter()
        .find_map(|e| e.decode(s).ok())
        .ok_or_else(|| "input is neither hex nor base64".to_owned())
}

fn main() -> ExitCode {
    let mut body_only = false;
    let mut compact = false;
    let mut decoder = Decoder::default();
    let mut inputs = Vec::new();
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "--body" => body_only = true,
            "--compact" => compact = true,
            "--v2" => decoder = Decoder::new(&token::V2),
            "-h" | "--help" => {
                eprintln!(
                    "usage: decode_node [--body] [--v2] [--compact] [FRAME_HEX_OR_BASE64 ...]"
                );
                eprintln!("       (without frames, reads one per line from standard input)");
                return ExitCode::SUCCESS;
            }
            _ => inputs.push(arg),
        }
    }
    if inputs.is_empty() {
        for line in std::io::stdin().lock().lines() {
            match line {
                Ok(l) if !l.trim().is_empty() => inputs.push(l),
                Ok(_) => {}
                Err(e) => {
                    eprintln!("reading standard input: {e}");
                    return ExitCode::FAILURE;
                }
            }
        }
    }
    let mut failed = false;
    for input in &inputs {
        let result = parse_input(input).and_then(|bytes| {
            let body = if body_only {
                std::borrow::Cow::Borrowed(&bytes[..])
            } else {
                decoder.unpack_frame(&bytes).map_err(|e| e.to_string())?
            };
            let doc = decoder.decode(&body).map_err(|e| e.to_string())?;
            Ok(if compact {
                format!("{}", doc.root())
            } else {
                format!("{:#}", doc.root())
            })
        });
        match result {
            Ok(text) => println!("{text}"),
            Err(e) => {
                eprintln!("error: {e}");
                failed = true;
            }
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
