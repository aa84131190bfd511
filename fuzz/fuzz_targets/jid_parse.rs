//! Arbitrary strings through the JID parser: no panics, and every JID that
//! parses formats back to a string that parses to the same JID.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wa_binary::{Jid, Node, decode, encode};

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    if let Ok(jid) = s.parse::<Jid>() {
        let text = jid.to_string();
        let again: Jid = text.parse().expect("formatted JID parses");
        assert_eq!(again, jid, "{s:?} -> {text:?}");
        // And it survives the wire.
        let node = Node::new("x").attr("jid", jid.clone());
        let bytes = encode(&node).expect("encodes");
        let doc = decode(&bytes[1..]).expect("decodes");
        assert_eq!(doc.root().attr_jid("jid").expect("typed jid"), jid);
    }
    // The text path (Baileys' string splitting) must never panic either.
    let _ = encode(&Node::new("x").attr("v", s)).map(|b| decode(&b[1..]).map(|d| d.to_node()));
});
