//! Binary XML node codec, JIDs and token dictionaries of WhatsApp Web (sans-I/O).
//!
//! * [`Node`] is the owned node applications build; [`encode`] writes it as a frame
//!   payload (flags byte + node) in one allocation ([`encoded_len`] is exact).
//! * [`encode_frame`] gives the same bytes as segments ([`EncodedFrame`], a
//!   `bytes::Buf`) that reference large byte contents instead of copying them.
//! * [`decode`] reads a node body without copying into a [`Document`], whose
//!   [`NodeRef`]s borrow the input; [`unpack_frame`] handles the flags byte and
//!   zlib-compressed payloads first.
//! * [`Jid`] is a parsed, compact address; [`Server`] names every server kind.
//! * [`token`] holds dictionary versions 3 (current) and 2 (older clients).
//!
//! ```
//! use wa_binary::{Jid, Node, Server, decode, encode, unpack_frame};
//!
//! let ping = Node::new("iq")
//!     .attr("id", "1")
//!     .attr("type", "get")
//!     .attr("xmlns", "w:p")
//!     .attr("to", Jid::server_jid(Server::Pn))
//!     .children([Node::new("ping")]);
//! let frame = encode(&ping)?;
//! assert_eq!(frame, [0x00, 0xf8, 0x0a, 0x19, 0x08, 0x55, 0x04, 0x29, 0x16, 0x57, 0x11, 0xfa, 0x00, 0x03, 0xf8, 0x01, 0xf8, 0x01, 0x56]);
//!
//! let body = unpack_frame(&frame)?;
//! let doc = decode(&body)?;
//! let iq = doc.root();
//! assert_eq!(iq.tag(), "iq");
//! assert_eq!(iq.attr_str("type")?, "get");
//! assert_eq!(iq.attr_jid("to")?, Jid::server_jid(Server::Pn));
//! assert!(iq.child("ping").is_some());
//! assert_eq!(iq.to_string(), r#"<iq id="1" type="get" xmlns="w:p" to="@s.whatsapp.net"><ping/></iq>"#);
//! assert_eq!(iq.to_owned(), ping);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod decode;
mod encode;
mod frame;
mod jid;
mod node;
mod strjid;
pub mod tag;
mod text;
pub mod token;

pub use compact_str::CompactString;
pub use decode::{
    AttrsRef, Children, ContentRef, DecodeError, DecodeLimits, Decoder, Document, JidKind, JidRef, NodeRef,
    ValueRef, decode, decode_frame, unpack_frame,
};
pub use encode::{
    DEFAULT_SPLICE_MIN, EncodeError, Encoder, MAX_ENCODE_DEPTH, encode, encode_frame, encode_into,
    encoded_len,
};
pub use frame::EncodedFrame;
pub use jid::{Jid, JidError, Server};
pub use node::{Attr, AttrError, AttrErrorKind, Attrs, Content, Node, Value};
