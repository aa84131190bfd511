//! The segmented encoder (`encode_frame`): same bytes as `encode`, and large byte
//! contents are referenced, never copied.
#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use bytes::{Buf, Bytes};
use wa_binary::{DEFAULT_SPLICE_MIN, Jid, Node, Server, encode, encode_frame};

fn media(payload: Bytes) -> Node {
    Node::new("iq")
        .attr("id", "71.229-3")
        .attr("type", "set")
        .attr("xmlns", "w:m")
        .attr("to", Jid::server_jid(Server::Pn))
        .children([
            Node::new("media").attr("type", "image").bytes(payload),
            Node::new("done").bytes(vec![1, 2, 3]),
        ])
}

#[test]
fn a_large_payload_is_referenced_not_copied() {
    let payload = Bytes::from((0..(1u32 << 20)).map(|i| (i % 251) as u8).collect::<Vec<u8>>());
    let node = media(payload.clone());
    let want = encode(&node).unwrap();
    let mut frame = encode_frame(&node).unwrap();
    assert_eq!(frame.len(), want.len());
    assert_eq!(frame.referenced(), 1);

    // Walk the segments: headers, then the payload itself (same memory), then the rest.
    let mut got = Vec::new();
    let mut saw_payload = false;
    while frame.has_remaining() {
        let chunk = frame.chunk();
        if chunk.as_ptr() == payload.as_ptr() {
            assert_eq!(chunk.len(), payload.len());
            saw_payload = true;
        } else {
            assert!(chunk.len() < 64, "only headers are copied, got a {}-byte chunk", chunk.len());
        }
        got.extend_from_slice(chunk);
        let n = chunk.len();
        frame.advance(n);
    }
    assert!(saw_payload, "the payload was copied");
    assert_eq!(got, want);
}

#[test]
fn small_payloads_are_copied_into_one_buffer() {
    let node = media(Bytes::from(vec![7u8; DEFAULT_SPLICE_MIN - 1]));
    let frame = encode_frame(&node).unwrap();
    assert_eq!(frame.referenced(), 0);
    assert_eq!(frame.chunk().len(), frame.len());
    assert_eq!(frame.into_vec(), encode(&node).unwrap());
}

#[test]
fn threshold_is_inclusive_and_advance_past_the_end_is_clamped() {
    let node = media(Bytes::from(vec![7u8; DEFAULT_SPLICE_MIN]));
    let mut frame = encode_frame(&node).unwrap();
    assert_eq!(frame.referenced(), 1);
    let len = frame.len();
    frame.advance(len + 10);
    assert!(frame.is_empty());
    assert!(frame.chunk().is_empty());
}
