//! Inputs the fuzzer found troublesome. Each must be handled promptly (these
//! once took exponential time: nested interop JIDs with an optional server).
//! No timing is asserted here; a regression hangs and the runner's timeout fails it.
#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use wa_binary::{Node, decode, encode, unpack_frame};

#[test]
fn fuzz_slow_units_decode_promptly() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data");
    let mut seen = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if !path
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("fuzz-")
        {
            continue;
        }
        let bytes = std::fs::read(&path).unwrap();
        // A regression shows as a hang, which the test runner's timeout reports.
        if let Ok(body) = unpack_frame(&bytes)
            && let Ok(doc) = decode(&body)
        {
            // Whatever we decode, our re-encoding of it must decode again.
            let node = doc.to_node();
            let again = encode(&node).unwrap();
            decode(&again[1..]).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        }
        seen += 1;
    }
    assert!(seen >= 1);
}

/// Text that Baileys would write as an undecodable JID (empty server, or JIDs
/// nested deeper than decoders read) is written raw, so it survives.
#[test]
fn text_with_awkward_at_signs_round_trips() {
    for text in ["x@", "@", "123@", "a@b@", "a@b@c@d@e@f@g", "a@b@c@d"] {
        let node = Node::new("x").attr("v", text).text(text);
        let wire = encode(&node).unwrap();
        let doc = decode(&wire[1..]).unwrap_or_else(|e| panic!("{text:?}: {e}"));
        assert_eq!(
            doc.root().attr_str("v").unwrap(),
            text.to_string().as_str(),
            "{text:?}"
        );
    }
}
