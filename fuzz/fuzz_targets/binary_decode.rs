//! Arbitrary frame payloads through the decoder: it must never panic, and
//! whatever decodes must survive the owned conversion, the text form and a
//! re-encode whose decoding is the same owned node.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wa_binary::{decode, encode, token, unpack_frame, Decoder};

fuzz_target!(|data: &[u8]| {
    let Ok(body) = unpack_frame(data) else { return };
    if let Ok(doc) = decode(&body) {
        let node = doc.to_node();
        let _ = doc.root().to_string();
        let _ = format!("{node:#}");
        if let Ok(bytes) = encode(&node) {
            // The segmented encoder gives the same bytes, whatever it references.
            let splice_min = 1 + data.len() % 64;
            let frame = wa_binary::Encoder::default().with_splice_min(splice_min).encode_frame(&node);
            assert_eq!(frame.expect("encodes like encode").into_vec(), bytes);
            let again = decode(&bytes[1..]).expect("our own encoding decodes");
            let again = again.to_node();
            // Re-encoding the re-decoded node is a fixed point.
            assert_eq!(encode(&again).expect("re-encodes"), encode(&again).expect("re-encodes"));
        }
    }
    let _ = Decoder::new(&token::V2).decode(&body).map(|d| d.to_node());
});
