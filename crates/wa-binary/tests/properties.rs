//! Property tests: encode∘decode is the identity on canonical nodes, and the
//! decoder never panics, whatever the bytes.
//!
//! "Canonical" excludes the inputs the wire format itself makes lossy (see the
//! crate docs): text containing `@` (it is written as a JID), and string content
//! that is written raw (it decodes as bytes, as in Baileys).
#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use proptest::prelude::*;
use wa_binary::{Content, Decoder, Jid, Node, Server, Value, decode, encode, token, unpack_frame};

fn token_str() -> impl Strategy<Value = String> {
    (1u8..=235).prop_map(|b| token::V3.single(b).unwrap().to_owned())
}

fn text_without_at() -> impl Strategy<Value = String> {
    prop_oneof![
        token_str(),
        "[0-9.-]{1,130}",
        "[0-9A-F]{1,130}",
        "[a-z0-9:_-]{0,20}",
        any::<String>().prop_map(|s| s.replace('@', "")),
        "[a-z]{200,300}",
    ]
}

fn jid() -> impl Strategy<Value = Jid> {
    let user = prop_oneof![
        "[0-9]{0,20}",
        "[a-z0-9.-]{1,24}",
        token_str().prop_filter("no reserved chars", |s| !s.contains(['@', ':', '_']))
    ];
    (user, 0usize..Server::ALL.len(), any::<u16>(), 0u8..4).prop_map(|(user, s, n, flavour)| {
        let server = Server::ALL[s];
        let base = match server {
            Server::Messenger => Jid::messenger(&user, n),
            Server::Interop => Jid::interop(&user, n, n.rotate_left(5)),
            _ => Jid::new(&user, server),
        }
        .unwrap();
        match (flavour, server.has_devices()) {
            (1, true) => base.clone().with_device(n % 256).unwrap_or(base),
            (2, _) if server == Server::Pn => base
                .clone()
                .with_agent(2 + (n % 100) as u8)
                .and_then(|j| j.with_device(n % 7))
                .unwrap_or(base),
            _ => base,
        }
    })
}

fn value() -> impl Strategy<Value = Value> {
    prop_oneof![
        3 => text_without_at().prop_map(|s| Value::Str(s.into())),
        1 => jid().prop_map(Value::Jid),
    ]
}

fn leaf() -> impl Strategy<Value = Node> {
    let content = prop_oneof![
        Just(Content::None),
        proptest::collection::vec(any::<u8>(), 0..300).prop_map(|b| Content::Bytes(b.into())),
        // String content survives only when it is written packed or as a token.
        // (Tokens known to both dictionaries, so the version 2 check holds too.)
        prop_oneof![
            token_str().prop_filter("v2 token", |s| token::V2.lookup(s).is_some()),
            "[0-9.-]{1,127}",
            "[0-9A-F]{1,127}"
        ]
        .prop_map(|s| Content::Str(s.into())),
        jid().prop_map(Content::Jid),
        Just(Content::Children(Vec::new())),
    ];
    (
        text_without_at().prop_filter("tag", |t| !t.is_empty()),
        proptest::collection::vec((text_without_at(), value()), 0..6),
        content,
    )
        .prop_map(|(tag, attrs, content)| {
            let mut n = Node::new(tag);
            for (k, v) in attrs {
                n = n.attr(k, v);
            }
            n.content = content;
            n
        })
}

fn node() -> impl Strategy<Value = Node> {
    leaf().prop_recursive(5, 64, 8, |inner| {
        (leaf(), proptest::collection::vec(inner, 0..8)).prop_map(|(mut n, kids)| {
            n.content = Content::Children(kids);
            n
        })
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn encode_then_decode_is_identity(n in node()) {
        let wire = encode(&n).unwrap();
        prop_assert_eq!(wire.len(), wa_binary::encoded_len(&n).unwrap());
        let doc = decode(&wire[1..]).unwrap();
        prop_assert_eq!(doc.to_node(), n.clone());
        // The same holds with the version 2 dictionary.
        let v2 = wa_binary::Encoder::new(&token::V2).encode(&n).unwrap();
        let doc2 = Decoder::new(&token::V2).decode(&v2[1..]).unwrap();
        prop_assert_eq!(doc2.to_node(), n);
    }

    #[test]
    fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        if let Ok(body) = unpack_frame(&bytes)
            && let Ok(doc) = decode(&body)
        {
            let _ = doc.to_node();
            let _ = doc.to_string();
        }
        let _ = decode(&bytes);
    }

    #[test]
    fn decode_never_panics_on_damaged_encodings(
        n in node(),
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut wire = encode(&n).unwrap();
        for (at, b) in edits {
            let i = at.index(wire.len());
            wire[i] = b;
        }
        let keep = cut.index(wire.len() + 1).max(1);
        wire.truncate(keep);
        if let Ok(body) = unpack_frame(&wire)
            && let Ok(doc) = decode(&body)
        {
            let owned = doc.to_node();
            let _ = format!("{owned:#}");
        }
    }

    /// The segmented encoder gives exactly the contiguous encoder's bytes, whatever
    /// is referenced, and reads correctly however the reader steps through it.
    #[test]
    fn encode_frame_matches_encode(n in node(), splice_min in 1usize..400, steps in proptest::collection::vec(1usize..97, 1..8)) {
        use bytes::Buf;
        let want = encode(&n).unwrap();
        let enc = wa_binary::Encoder::default().with_splice_min(splice_min);
        let frame = enc.encode_frame(&n).unwrap();
        prop_assert_eq!(frame.len(), want.len());
        prop_assert_eq!(frame.clone().into_vec(), want.clone());
        // Read in uneven steps: chunk, then advance part of it.
        let mut f = frame;
        let mut got = Vec::new();
        let mut i = 0;
        while f.has_remaining() {
            let chunk = f.chunk();
            prop_assert!(!chunk.is_empty());
            let take = chunk.len().min(steps[i % steps.len()]);
            got.extend_from_slice(&chunk[..take]);
            f.advance(take);
            prop_assert_eq!(f.remaining(), want.len() - got.len());
            i += 1;
        }
        prop_assert_eq!(got, want);
    }

    #[test]
    fn jid_text_round_trip(j in jid()) {
        let text = j.to_string();
        prop_assert_eq!(text.parse::<Jid>().unwrap(), j);
    }
}
