//! TLS: the files read, parsed and checked as a pair, and the acceptor that serves them.
//!
//! An empty or garbage certificate would parse as an empty chain and fail every handshake
//! while the log said the reload worked, so everything is checked first: a bad file stops
//! start-up and a bad reload keeps the certificates in use.
//!
//! The acceptor completes each handshake before handing the connection to poem (which never
//! shows handlers the peer's certificate): a verified client certificate then travels with
//! every request of its connection as the remote address (`net::identity`). Handshakes run
//! concurrently, bounded in number and time, so a slow client holds up no other.

use std::io;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use poem::http::uri::Scheme;
use poem::listener::{Acceptor, TcpAcceptor};
use poem::web::{LocalAddr, RemoteAddr};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::sign::CertifiedKey;
use rustls::{RootCertStore, ServerConfig};
use tokio::net::TcpStream;
use tokio::sync::{Semaphore, mpsc, watch};
use tokio_rustls::server::TlsStream;

use crate::config::TlsFiles;

/// Reads, parses and checks `files` into the server configuration.
pub fn load(files: &TlsFiles) -> io::Result<Arc<ServerConfig>> {
    let cert = read(&files.cert, "certificate")?;
    let key = read(&files.key, "key")?;
    let chain = certificates(&cert)
        .map_err(|err| invalid(format!("TLS certificate {}: {err}", files.cert.display())))?;
    check_pair(&cert, &key).map_err(|err| {
        invalid(format!(
            "TLS certificate {} and key {}: {err}",
            files.cert.display(),
            files.key.display()
        ))
    })?;
    let key = PrivateKeyDer::from_pem_slice(&key)
        .map_err(|err| invalid(format!("TLS key {}: {err}", files.key.display())))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|err| invalid(err.to_string()))?;
    let builder = match &files.client_ca {
        None => builder.with_no_client_auth(),
        Some(path) => {
            let ca = read(path, "client CA")?;
            let verifier = client_verifier(&ca)
                .map_err(|err| invalid(format!("TLS client CA {}: {err}", path.display())))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder
        .with_single_cert(chain, key)
        .map_err(|err| invalid(format!("TLS certificate {}: {err}", files.cert.display())))?;
    // HTTP/1.1 only (see `net::limits`): Flux and notification-controller speak it.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// SIGHUP reloads of the certificates since start: (loaded, refused). A refused reload keeps
/// the certificates in use; the count tells an operator (and a test) that it ran.
pub static RELOADS: [std::sync::atomic::AtomicU64; 2] = [
    std::sync::atomic::AtomicU64::new(0),
    std::sync::atomic::AtomicU64::new(0),
];

/// Handshaken connections waiting for a connection slot (`net::limits`).
const READY_QUEUE: usize = 256;

/// A connection whose handshake completed, with its addresses.
type Handshaken = (TlsStream<TcpStream>, LocalAddr, RemoteAddr);

/// Serves TLS on a TCP acceptor with the configuration `configs` holds (replaced on reload).
pub struct TlsAcceptor {
    local: Vec<LocalAddr>,
    ready: mpsc::Receiver<Handshaken>,
    task: tokio::task::JoinHandle<()>,
}

impl TlsAcceptor {
    /// Handshakes run at most `limits.max_connections` at once (further connections wait in
    /// the kernel's accept queue), each within `limits.header_timeout`: a socket that says
    /// nothing holds a handshake slot no longer than a plain one holds a connection slot.
    pub fn new(
        tcp: TcpAcceptor,
        configs: watch::Receiver<Arc<ServerConfig>>,
        limits: &crate::config::Limits,
    ) -> Self {
        let local = tcp.local_addr();
        let (sender, ready) = mpsc::channel(READY_QUEUE);
        let task = tokio::spawn(handshakes(
            tcp,
            configs,
            limits.max_connections,
            limits.header_timeout,
            sender,
        ));
        TlsAcceptor { local, ready, task }
    }
}

impl Drop for TlsAcceptor {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Accepts TCP connections and runs their handshakes, each in its own task.
async fn handshakes(
    mut tcp: TcpAcceptor,
    configs: watch::Receiver<Arc<ServerConfig>>,
    slots: usize,
    timeout: Duration,
    ready: mpsc::Sender<Handshaken>,
) {
    let permits = Arc::new(Semaphore::new(slots));
    loop {
        let Ok(permit) = permits.clone().acquire_owned().await else {
            return;
        };
        let (stream, local, remote, _) = match tcp.accept().await {
            Ok(accepted) => accepted,
            Err(err) => {
                // Out of file descriptors and the like: wait a little, keep serving.
                tracing::warn!(error = %err, "cannot accept a connection");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let acceptor = tokio_rustls::TlsAcceptor::from(configs.borrow().clone());
        let ready = ready.clone();
        tokio::spawn(async move {
            let _permit = permit;
            match tokio::time::timeout(timeout, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => {
                    let remote = match tls.get_ref().1.peer_certificates() {
                        Some([leaf, ..]) => super::identity::with_certificate(&remote, leaf),
                        _ => remote,
                    };
                    let _ = ready.send((tls, local, remote)).await;
                }
                Ok(Err(err)) => tracing::debug!(error = %err, %remote, "TLS handshake failed"),
                Err(_) => tracing::debug!(%remote, "TLS handshake timed out"),
            }
        });
    }
}

impl Acceptor for TlsAcceptor {
    type Io = TlsStream<TcpStream>;

    fn local_addr(&self) -> Vec<LocalAddr> {
        self.local.clone()
    }

    async fn accept(&mut self) -> io::Result<(Self::Io, LocalAddr, RemoteAddr, Scheme)> {
        match self.ready.recv().await {
            Some((io, local, remote)) => Ok((io, local, remote, Scheme::HTTPS)),
            None => Err(io::Error::other("the TLS acceptor stopped")),
        }
    }
}

fn read(path: &Path, what: &str) -> io::Result<Vec<u8>> {
    std::fs::read(path).map_err(|err| {
        io::Error::new(
            err.kind(),
            format!("cannot read TLS {what} {}: {err}", path.display()),
        )
    })
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

/// The chain parses and is not empty, the key parses, and the key is the certificate's.
fn check_pair(cert_pem: &[u8], key_pem: &[u8]) -> Result<(), String> {
    let chain = certificates(cert_pem)?;
    let key = PrivateKeyDer::from_pem_slice(key_pem)
        .map_err(|err| format!("the key file holds no usable private key ({err})"))?;
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    CertifiedKey::from_der(chain, key, &provider)
        .map(drop)
        .map_err(|err| match err {
            rustls::Error::InconsistentKeys(_) => {
                "the private key does not belong to the certificate".to_owned()
            }
            other => format!("unusable certificate or key ({other})"),
        })
}

/// The verifier of client certificates: at least one CA certificate, each one usable as a
/// trust anchor. A client must present a certificate it signed.
fn client_verifier(
    pem: &[u8],
) -> Result<Arc<dyn rustls::server::danger::ClientCertVerifier>, String> {
    let mut roots = RootCertStore::empty();
    for cert in certificates(pem)? {
        // rustls would trust a leaf as a root too; a client CA that is no CA is a mistake.
        if !is_ca(&cert) {
            return Err(
                "holds a certificate that is not a CA (no basicConstraints cA=TRUE): give \
                 the certificate of the authority that signs the client certificates"
                    .into(),
            );
        }
        roots
            .add(cert)
            .map_err(|err| format!("not a usable CA certificate ({err})"))?;
    }
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    WebPkiClientVerifier::builder_with_provider(roots.into(), provider.into())
        .build()
        .map_err(|err| err.to_string())
}

/// Whether a certificate says it is a CA: its basicConstraints extension (OID 2.5.29.19)
/// holds `cA TRUE`. DER: the OID, an optional `critical` BOOLEAN, then an OCTET STRING
/// wrapping `SEQUENCE { cA BOOLEAN DEFAULT FALSE, pathLen INTEGER OPTIONAL }`.
fn is_ca(der: &[u8]) -> bool {
    const BASIC_CONSTRAINTS: [u8; 5] = [0x06, 0x03, 0x55, 0x1D, 0x13];
    let Some(at) = der.windows(5).position(|w| w == BASIC_CONSTRAINTS) else {
        return false;
    };
    let mut rest = &der[at + 5..];
    if rest.starts_with(&[0x01, 0x01]) {
        rest = rest.get(3..).unwrap_or_default();
    }
    // OCTET STRING (short length), SEQUENCE (short length), then the cA BOOLEAN if present.
    matches!(rest, [0x04, _, 0x30, len, 0x01, 0x01, value, ..] if *len >= 3 && *value != 0)
}

fn certificates(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    let chain = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| format!("the certificate file does not parse as PEM ({err})"))?;
    if chain.is_empty() {
        return Err("the certificate file holds no certificate".into());
    }
    Ok(chain)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn generated(name: &str) -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec![name.to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        (cert.pem(), key.serialize_pem())
    }

    #[test]
    fn a_matching_pair_passes() {
        let (cert, key) = generated("localhost");
        check_pair(cert.as_bytes(), key.as_bytes()).unwrap();
    }

    #[test]
    fn a_client_ca_must_be_a_ca() {
        let (leaf, _) = generated("client.example.com");
        let refused = client_verifier(leaf.as_bytes()).err().unwrap();
        assert!(refused.contains("not a CA"), "{refused}");
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = params.self_signed(&key).unwrap().pem();
        client_verifier(ca.as_bytes()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Constrained(0));
        let constrained = params.self_signed(&key).unwrap().pem();
        client_verifier(constrained.as_bytes()).unwrap();
        params.is_ca = rcgen::IsCa::ExplicitNoCa;
        let explicit_leaf = params.self_signed(&key).unwrap().pem();
        assert!(client_verifier(explicit_leaf.as_bytes()).is_err());
    }

    #[test]
    fn empty_garbage_and_mismatched_files_are_refused_with_the_reason() {
        let (cert, key) = generated("localhost");
        let (_, other_key) = generated("elsewhere");
        let empty = check_pair(b"", key.as_bytes()).unwrap_err();
        assert!(empty.contains("no certificate"), "{empty}");
        let garbage = check_pair(b"-----BEGIN CERTIFICATE-----\nnope\n", key.as_bytes());
        assert!(garbage.is_err());
        let no_key = check_pair(cert.as_bytes(), b"not a key").unwrap_err();
        assert!(no_key.contains("no usable private key"), "{no_key}");
        let mismatch = check_pair(cert.as_bytes(), other_key.as_bytes()).unwrap_err();
        assert!(mismatch.contains("does not belong"), "{mismatch}");
        assert!(client_verifier(b"").is_err());
    }
}
