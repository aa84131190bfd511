//! Parsing and building the three `HandshakeMessage` protobufs (no cryptography here).

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

/// Parses a serialized `HandshakeMessage{clientHello{ephemeral}}`; returns the client's
/// ephemeral key. Fields of other patterns (IK's static/payload) are ignored: this
/// responder speaks XX only.
pub fn parse_client_hello(message: &[u8]) -> Result<PublicKey> {
    const STAGE: HandshakeStage = HandshakeStage::ClientHello;
    let m = decode(message, STAGE)?;
    let others = m.server_hello.is_some() || m.client_finish.is_some();
    let hello = inner(m.client_hello, others, STAGE, "clientHello")?;
    public_key(hello.ephemeral, STAGE, "clientHello.ephemeral")
}

/// Parses a serialized `HandshakeMessage{serverHello{ephemeral, static, payload}}`.
pub fn parse_server_hello(message: &[u8]) -> Result<ServerHelloParts> {
    const STAGE: HandshakeStage = HandshakeStage::ServerHello;
    let m = decode(message, STAGE)?;
    let others = m.client_hello.is_some() || m.client_finish.is_some();
    let hello = inner(m.server_hello, others, STAGE, "serverHello")?;
    Ok(ServerHelloParts {
        ephemeral: public_key(hello.ephemeral, STAGE, "serverHello.ephemeral")?,
        static_ciphertext: sealed(hello.r#static, STAGE, "serverHello.static", Some(ENCRYPTED_KEY_LEN))?,
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
