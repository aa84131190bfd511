//! Inputs the fuzzer found troublesome. Each must be handled promptly (these
//! once took exponential time: nested interop JIDs with an optional server).
//! No timing is asserted here; a regression hangs and the runner's timeout fails it.
#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use wa_binary::{decode, unpack_frame};

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
        if let Ok(body) = unpack_frame(&bytes) {
            let _ = decode(&body).map(|d| d.to_node());
        }
        seen += 1;
    }
    assert!(seen >= 1);
}
