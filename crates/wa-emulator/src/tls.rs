//! HTTPS for the media endpoints. WhatsApp clients fetch and upload media over `https://`
//! only, so the emulator makes a throwaway certificate authority in-process and a leaf
//! certificate for `127.0.0.1` / `localhost` signed by it. Clients trust the CA explicitly
//! (Node: `NODE_EXTRA_CA_CERTS=<file with ca_pem>`); nothing is weakened in them.
//!
//! TLS keys come from the OS RNG even in deterministic mode: they never influence what the
//! protocol produces, only how the bytes travel.

use std::net::SocketAddr;
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// Why the media TLS setup failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsSetupError {
    /// Generating the CA or leaf certificate failed.
    #[error("cannot generate the media test certificates: {0}")]
    Certificate(#[from] rcgen::Error),
    /// rustls refused the server configuration.
    #[error("cannot configure TLS for the media endpoint: {0}")]
    Config(#[from] rustls::Error),
}

/// The emulator's media certificate authority and the server configuration it signs.
#[derive(Clone)]
pub(crate) struct MediaTls {
    /// The CA certificate, PEM: what clients must trust.
    pub ca_pem: String,
    acceptor: TlsAcceptor,
}

impl std::fmt::Debug for MediaTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MediaTls").finish_non_exhaustive()
    }
}

impl MediaTls {
    /// A fresh CA and a leaf for the loopback names.
    pub fn generate() -> Result<Self, TlsSetupError> {
        let ca_key = KeyPair::generate()?;
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params.distinguished_name.push(DnType::CommonName, "wa-emulator test media CA");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca_cert = ca_params.self_signed(&ca_key)?;
        let issuer = Issuer::new(ca_params, ca_key);

        let leaf_key = KeyPair::generate()?;
        let mut leaf_params =
            CertificateParams::new(vec!["127.0.0.1".to_owned(), "::1".to_owned(), "localhost".to_owned()])?;
        leaf_params.distinguished_name.push(DnType::CommonName, "wa-emulator media");
        let leaf = leaf_params.signed_by(&leaf_key, &issuer)?;

        let key = rustls::pki_types::PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into());
        let config =
            rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()?
                .with_no_client_auth()
                .with_single_cert(vec![leaf.der().clone(), ca_cert.der().clone()], key)?;
        Ok(Self { ca_pem: ca_cert.pem(), acceptor: TlsAcceptor::from(Arc::new(config)) })
    }
}

/// An axum listener that hands out TLS streams. Handshakes run in their own tasks, so a
/// slow or broken client never holds up the others.
pub(crate) struct TlsListener {
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    addr: SocketAddr,
    accept_task: tokio::task::JoinHandle<()>,
}

impl TlsListener {
    pub fn new(listener: TcpListener, tls: &MediaTls) -> std::io::Result<Self> {
        let addr = listener.local_addr()?;
        let (tx, ready) = mpsc::channel(64);
        let acceptor = tls.acceptor.clone();
        let accept_task = tokio::spawn(async move {
            loop {
                let (tcp, peer) = match listener.accept().await {
                    Ok(c) => c,
                    Err(e) => {
                        // Out of file descriptors and the like: back off briefly, keep serving.
                        tracing::warn!(error = %e, "media TLS accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let acceptor = acceptor.clone();
                let tx = tx.clone();
                tokio::spawn(async move {
                    let handshake =
                        tokio::time::timeout(std::time::Duration::from_secs(60), acceptor.accept(tcp)).await;
                    match handshake {
                        Ok(Ok(stream)) => {
                            let _ = tx.send((stream, peer)).await;
                        }
                        Ok(Err(e)) => tracing::info!(%peer, error = %e, "media TLS handshake failed"),
                        Err(_) => tracing::info!(%peer, "media TLS handshake timed out"),
                    }
                });
            }
        });
        Ok(Self { ready, addr, accept_task })
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.accept_task.abort();
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(c) => c,
            // The accept task only ends when this listener is dropped.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.addr)
    }
}
