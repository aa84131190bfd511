//! The one error type of this crate.
//!
//! Every variant belongs to exactly one [`ErrorKind`], so a caller can tell a peer that
//! sent garbage ([`ErrorKind::Malformed`]) from one whose bytes were well formed but did
//! not authenticate ([`ErrorKind::Crypto`]) and from one we refuse on purpose
//! ([`ErrorKind::Policy`]). [`ErrorKind::Local`] covers misuse on our own side.

/// Which handshake message an error is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum HandshakeStage {
    /// `HandshakeMessage.clientHello` (client → server).
    ClientHello,
    /// `HandshakeMessage.serverHello` (server → client).
    ServerHello,
    /// `HandshakeMessage.clientFinish` (client → server).
    ClientFinish,
}

impl core::fmt::Display for HandshakeStage {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Self::ClientHello => "ClientHello",
            Self::ServerHello => "ServerHello",
            Self::ClientFinish => "ClientFinish",
        })
    }
}

/// One certificate of the server's chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CertRole {
    /// Signed by the root key; its key signs the leaf.
    Intermediate,
    /// Signed by the intermediate; carries the server's static key.
    Leaf,
}

impl core::fmt::Display for CertRole {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Self::Intermediate => "intermediate",
            Self::Leaf => "leaf",
        })
    }
}

/// The broad class of an [`Error`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The peer's bytes do not parse (bad header, bad length, bad protobuf, missing field).
    Malformed,
    /// Well-formed bytes that fail a cryptographic check (AEAD tag, signature, weak DH).
    Crypto,
    /// Authentic data that we refuse by policy (untrusted root, serials, validity, key binding).
    Policy,
    /// Misuse on our side (oversized outgoing frame, exhausted nonce counter).
    Local,
}

/// Errors of the frame codec, the handshake, the certificate chain and the transport.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    // ----- malformed peer bytes -------------------------------------------------------
    /// The connection intro is not `[ED 00 01 len24 routing] WA 06 <dict>`.
    #[error("malformed connection header: {0}")]
    BadConnectionHeader(&'static str),
    /// An incoming frame (or routing info) announces more bytes than the configured maximum.
    #[error("frame of {len} bytes exceeds the maximum of {max}")]
    FrameTooLarge {
        /// Announced (or attempted) length.
        len: usize,
        /// The limit in force.
        max: usize,
    },
    /// A handshake message (or its decrypted payload) is not a valid protobuf.
    #[error("{stage}: invalid protobuf in {what}: {source}")]
    Protobuf {
        /// Which handshake message.
        stage: HandshakeStage,
        /// Which structure failed to decode.
        what: &'static str,
        /// The decoder's complaint.
        #[source]
        source: prost::DecodeError,
    },
    /// A required field is absent.
    #[error("{stage}: missing field {field}")]
    MissingField {
        /// Which handshake message.
        stage: HandshakeStage,
        /// Dotted path of the field.
        field: &'static str,
    },
    /// The `HandshakeMessage` carries a different message than the one expected next.
    #[error("expected {expected}, got another handshake message")]
    UnexpectedMessage {
        /// What the state machine waits for.
        expected: HandshakeStage,
    },
    /// A field has the wrong length.
    #[error("{stage}: field {field} has {got} bytes, expected {expected}")]
    BadLength {
        /// Which handshake message.
        stage: HandshakeStage,
        /// Dotted path of the field.
        field: &'static str,
        /// Required length.
        expected: usize,
        /// Actual length.
        got: usize,
    },
    /// A certificate in the chain is missing a part or has a wrong-sized one.
    #[error("malformed {cert} certificate: {reason}")]
    MalformedCertificate {
        /// Which certificate.
        cert: CertRole,
        /// What is wrong.
        reason: &'static str,
    },
    /// The stream ended inside a frame (or inside the intro).
    #[error("stream ended with {buffered} bytes of an incomplete frame")]
    Truncated {
        /// Bytes left in the decoder.
        buffered: usize,
    },
    /// A transport frame is shorter than the 16-byte AEAD tag.
    #[error("transport frame of {len} bytes is shorter than the AEAD tag")]
    FrameTooShort {
        /// Frame length.
        len: usize,
    },

    // ----- cryptographic failure ------------------------------------------------------
    /// AES-GCM authentication failed during the handshake.
    #[error("{stage}: AEAD authentication failed")]
    HandshakeBadTag {
        /// Which handshake message.
        stage: HandshakeStage,
    },
    /// AES-GCM authentication failed on a transport frame.
    #[error("transport frame #{counter}: AEAD authentication failed")]
    TransportBadTag {
        /// The receive counter of the frame.
        counter: u32,
    },
    /// The leaf certificate's XEdDSA signature does not verify under the intermediate key.
    #[error("{cert} certificate signature does not verify")]
    BadSignature {
        /// Which certificate.
        cert: CertRole,
    },
    /// A Diffie-Hellman result is all zero (the peer sent a low-order point).
    #[error("{stage}: Diffie-Hellman with a low-order public key")]
    WeakKey {
        /// Which handshake message carried the key.
        stage: HandshakeStage,
    },

    // ----- policy refusal -------------------------------------------------------------
    /// The intermediate certificate is not signed by the configured root key.
    #[error("certificate chain is not signed by the trusted root key")]
    UntrustedRoot,
    /// `intermediate.issuerSerial` or `leaf.issuerSerial` is not what the chain requires.
    #[error("{cert} certificate: issuer serial {got}, expected {expected}")]
    IssuerSerialMismatch {
        /// Which certificate.
        cert: CertRole,
        /// Required issuer serial.
        expected: u32,
        /// Actual issuer serial.
        got: u32,
    },
    /// The leaf certificate's key is not the static key the server used in the handshake.
    #[error("leaf certificate key does not match the server's static key")]
    LeafKeyMismatch,
    /// The time given to the verifier is before `notBefore`.
    #[error("{cert} certificate not valid before {not_before} (now {now})")]
    CertNotYetValid {
        /// Which certificate.
        cert: CertRole,
        /// Its `notBefore` (unix seconds).
        not_before: u64,
        /// The injected time (unix seconds).
        now: u64,
    },
    /// The time given to the verifier is after `notAfter`.
    #[error("{cert} certificate expired at {not_after} (now {now})")]
    CertExpired {
        /// Which certificate.
        cert: CertRole,
        /// Its `notAfter` (unix seconds).
        not_after: u64,
        /// The injected time (unix seconds).
        now: u64,
    },

    // ----- local misuse ---------------------------------------------------------------
    /// The 32-bit nonce counter of one direction is used up; the connection must end.
    #[error("nonce counter exhausted")]
    NonceExhausted,
    /// Something we were asked to send does not fit (a frame payload or routing info over
    /// 16 MiB − 1, a plaintext over 16 MiB − 17).
    #[error("{what} of {len} bytes is too long (max {max})")]
    TooLong {
        /// What was too long.
        what: &'static str,
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
}

impl Error {
    /// The class of this error: malformed input, crypto failure, policy refusal or local misuse.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::BadConnectionHeader(_)
            | Self::FrameTooLarge { .. }
            | Self::Protobuf { .. }
            | Self::MissingField { .. }
            | Self::UnexpectedMessage { .. }
            | Self::BadLength { .. }
            | Self::MalformedCertificate { .. }
            | Self::FrameTooShort { .. }
            | Self::Truncated { .. } => ErrorKind::Malformed,
            Self::HandshakeBadTag { .. }
            | Self::TransportBadTag { .. }
            | Self::BadSignature { .. }
            | Self::WeakKey { .. } => ErrorKind::Crypto,
            Self::UntrustedRoot
            | Self::IssuerSerialMismatch { .. }
            | Self::LeafKeyMismatch
            | Self::CertNotYetValid { .. }
            | Self::CertExpired { .. } => ErrorKind::Policy,
            Self::NonceExhausted | Self::TooLong { .. } => ErrorKind::Local,
        }
    }
}

/// Result alias of this crate.
pub type Result<T, E = Error> = core::result::Result<T, E>;
