//! Parsing and building the `HandshakeMessage` protobufs of XX, IK and XXfallback (no
//! cryptography here).
//!
//! | pattern | ClientHello | ServerHello | ClientFinish |
//! |---|---|---|---|
//! | XX | `ephemeral` | `ephemeral, static, payload` | `static, payload` |
//! | IK, accepted | `ephemeral, static, payload` | `ephemeral, payload` | none |
//! | IK answered with XXfallback | `ephemeral, static, payload` | `ephemeral, static, payload` | `static, payload` |
//!
//! Shapes from whatsapp-rust `wacore/noise/src/handshake.rs` (`build_ik_client_hello`,
//! `IkHandshakeState::read_server_hello`: a ServerHello with `static` set means fallback).
//! The XXKEM fields of `ClientHello` (`useExtended`, `extendedCiphertext`, …) are ignored.

use prost::Message as _;
use wa_crypto::PublicKey;
use wa_proto::HandshakeMessage;
use wa_proto::handshake_message::{ClientFinish, ClientHello, ServerHello};

use crate::error::{Error, HandshakeStage, Result};
use crate::symmetric::TAG_LEN;

/// An encrypted 32-byte static key: ciphertext plus tag.
pub const ENCRYPTED_KEY_LEN: usize = 32 + TAG_LEN;

/// `ServerHello` fields, lengths checked, still encrypted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerHelloParts {
    /// The server's ephemeral key (plain).
    pub ephemeral: PublicKey,
    /// `Enc(server static)`, 48 bytes.
    pub static_ciphertext: Vec<u8>,
    /// `Enc(CertChain)`, at least 16 bytes.
    pub payload_ciphertext: Vec<u8>,
}

/// `ClientHello` fields, lengths checked, still encrypted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientHelloParts {
    /// The client's ephemeral key (plain).
    pub ephemeral: PublicKey,
    /// Present when the client resumes with IK.
    pub resume: Option<IkCiphertexts>,
}

/// The two sealed fields of an IK `ClientHello`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IkCiphertexts {
    /// `Enc(client static)`, 48 bytes.
    pub static_ciphertext: Vec<u8>,
    /// `Enc(ClientPayload)`, at least 16 bytes.
    pub payload_ciphertext: Vec<u8>,
}

/// A `ServerHello` as an IK client reads it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IkServerHelloParts {
    /// No `static`: the server accepted IK.
    Accepted {
        /// The server's ephemeral key (plain).
        ephemeral: PublicKey,
        /// `Enc(payload)`, at least 16 bytes.
        payload_ciphertext: Vec<u8>,
    },
    /// `static` present: the server answered with XXfallback (same shape as XX).
    Fallback(ServerHelloParts),
}

/// `ClientFinish` fields, lengths checked, still encrypted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientFinishParts {
    /// `Enc(client static)`, 48 bytes.
    pub static_ciphertext: Vec<u8>,
    /// `Enc(ClientPayload)`, at least 16 bytes.
    pub payload_ciphertext: Vec<u8>,
}

fn decode(message: &[u8], stage: HandshakeStage) -> Result<HandshakeMessage> {
    HandshakeMessage::decode(message).map_err(|source| Error::Protobuf {
        stage,
        what: "HandshakeMessage",
        source,
    })
}

/// The inner message for `stage`, or why it is not there.
fn inner<T>(found: Option<T>, others_set: bool, stage: HandshakeStage, field: &'static str) -> Result<T> {
    match found {
        Some(m) => Ok(m),
        None if others_set => Err(Error::UnexpectedMessage { expected: stage }),
        None => Err(Error::MissingField { stage, field }),
    }
}

fn public_key(bytes: Option<Vec<u8>>, stage: HandshakeStage, field: &'static str) -> Result<PublicKey> {
    let bytes = bytes.ok_or(Error::MissingField { stage, field })?;
    let arr: [u8; 32] = bytes.as_slice().try_into().map_err(|_| Error::BadLength {
        stage,
        field,
        expected: 32,
        got: bytes.len(),
    })?;
    Ok(PublicKey::from_array(arr))
}

fn sealed(
    bytes: Option<Vec<u8>>,
    stage: HandshakeStage,
    field: &'static str,
    exact: Option<usize>,
) -> Result<Vec<u8>> {
    let bytes = bytes.ok_or(Error::MissingField { stage, field })?;
    let ok = match exact {
        Some(n) => bytes.len() == n,
        None => bytes.len() >= TAG_LEN,
    };
    if !ok {
        return Err(Error::BadLength { stage, field, expected: exact.unwrap_or(TAG_LEN), got: bytes.len() });
    }
    Ok(bytes)
}

/// Parses a serialized `HandshakeMessage{clientHello{ephemeral[, static, payload]}}`:
/// XX's hello has the ephemeral key only, IK's also both sealed fields. One sealed field
/// without the other is malformed.
pub fn parse_client_hello(message: &[u8]) -> Result<ClientHelloParts> {
    const STAGE: HandshakeStage = HandshakeStage::ClientHello;
    let m = decode(message, STAGE)?;
    let others = m.server_hello.is_some() || m.client_finish.is_some();
    let hello = inner(m.client_hello, others, STAGE, "clientHello")?;
    let ephemeral = public_key(hello.ephemeral, STAGE, "clientHello.ephemeral")?;
    let resume = match (hello.r#static, hello.payload) {
        (None, None) => None,
        (s, p) => Some(IkCiphertexts {
            static_ciphertext: sealed(s, STAGE, "clientHello.static", Some(ENCRYPTED_KEY_LEN))?,
            payload_ciphertext: sealed(p, STAGE, "clientHello.payload", None)?,
        }),
    };
    Ok(ClientHelloParts { ephemeral, resume })
}

fn server_hello_body(message: &[u8]) -> Result<ServerHello> {
    const STAGE: HandshakeStage = HandshakeStage::ServerHello;
    let m = decode(message, STAGE)?;
    let others = m.client_hello.is_some() || m.client_finish.is_some();
    inner(m.server_hello, others, STAGE, "serverHello")
}

fn full_server_hello(hello: ServerHello) -> Result<ServerHelloParts> {
    const STAGE: HandshakeStage = HandshakeStage::ServerHello;
    Ok(ServerHelloParts {
        ephemeral: public_key(hello.ephemeral, STAGE, "serverHello.ephemeral")?,
        static_ciphertext: sealed(hello.r#static, STAGE, "serverHello.static", Some(ENCRYPTED_KEY_LEN))?,
        payload_ciphertext: sealed(hello.payload, STAGE, "serverHello.payload", None)?,
    })
}

/// Parses a serialized `HandshakeMessage{serverHello{ephemeral, static, payload}}` (XX).
pub fn parse_server_hello(message: &[u8]) -> Result<ServerHelloParts> {
    full_server_hello(server_hello_body(message)?)
}

/// Parses the answer to an IK `ClientHello`: `static` absent means IK was accepted,
/// present means XXfallback (WA Web and whatsapp-rust branch on exactly that field).
pub fn parse_ik_server_hello(message: &[u8]) -> Result<IkServerHelloParts> {
    const STAGE: HandshakeStage = HandshakeStage::ServerHello;
    let hello = server_hello_body(message)?;
    if hello.r#static.is_some() {
        return full_server_hello(hello).map(IkServerHelloParts::Fallback);
    }
    Ok(IkServerHelloParts::Accepted {
        ephemeral: public_key(hello.ephemeral, STAGE, "serverHello.ephemeral")?,
        payload_ciphertext: sealed(hello.payload, STAGE, "serverHello.payload", None)?,
    })
}

/// Parses a serialized `HandshakeMessage{clientFinish{static, payload}}`.
pub fn parse_client_finish(message: &[u8]) -> Result<ClientFinishParts> {
    const STAGE: HandshakeStage = HandshakeStage::ClientFinish;
    let m = decode(message, STAGE)?;
    let others = m.client_hello.is_some() || m.server_hello.is_some();
    let finish = inner(m.client_finish, others, STAGE, "clientFinish")?;
    Ok(ClientFinishParts {
        static_ciphertext: sealed(finish.r#static, STAGE, "clientFinish.static", Some(ENCRYPTED_KEY_LEN))?,
        payload_ciphertext: sealed(finish.payload, STAGE, "clientFinish.payload", None)?,
    })
}

pub(crate) fn client_hello(ephemeral: &PublicKey) -> Vec<u8> {
    HandshakeMessage {
        client_hello: Some(ClientHello {
            ephemeral: Some(ephemeral.as_bytes().to_vec()),
            ..Default::default()
        }),
        ..Default::default()
    }
    .encode_to_vec()
}

pub(crate) fn ik_client_hello(
    ephemeral: &PublicKey,
    static_ciphertext: Vec<u8>,
    payload_ciphertext: Vec<u8>,
) -> Vec<u8> {
    HandshakeMessage {
        client_hello: Some(ClientHello {
            ephemeral: Some(ephemeral.as_bytes().to_vec()),
            r#static: Some(static_ciphertext),
            payload: Some(payload_ciphertext),
            ..Default::default()
        }),
        ..Default::default()
    }
    .encode_to_vec()
}

/// IK's accepting ServerHello: no `static` (the client already has it).
pub(crate) fn ik_server_hello(ephemeral: &PublicKey, payload_ciphertext: Vec<u8>) -> Vec<u8> {
    HandshakeMessage {
        server_hello: Some(ServerHello {
            ephemeral: Some(ephemeral.as_bytes().to_vec()),
            payload: Some(payload_ciphertext),
            ..Default::default()
        }),
        ..Default::default()
    }
    .encode_to_vec()
}

pub(crate) fn server_hello(
    ephemeral: &PublicKey,
    static_ciphertext: Vec<u8>,
    payload_ciphertext: Vec<u8>,
) -> Vec<u8> {
    HandshakeMessage {
        server_hello: Some(ServerHello {
            ephemeral: Some(ephemeral.as_bytes().to_vec()),
            r#static: Some(static_ciphertext),
            payload: Some(payload_ciphertext),
            ..Default::default()
        }),
        ..Default::default()
    }
    .encode_to_vec()
}

pub(crate) fn client_finish(static_ciphertext: Vec<u8>, payload_ciphertext: Vec<u8>) -> Vec<u8> {
    HandshakeMessage {
        client_finish: Some(ClientFinish {
            r#static: Some(static_ciphertext),
            payload: Some(payload_ciphertext),
            ..Default::default()
        }),
        ..Default::default()
    }
    .encode_to_vec()
}
