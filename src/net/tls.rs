//! TLS files: read, parsed and checked as a pair before poem is handed them.
//!
//! poem parses the PEM files only when it builds the server configuration, and an empty or
//! garbage certificate parses as an empty chain: every handshake would then fail while the
//! log says the reload worked. Everything is checked here first, so a bad file stops start-up
//! and a bad reload keeps the certificates in use.

use std::io;
use std::path::Path;

use poem::listener::{RustlsCertificate, RustlsConfig};
use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::sign::CertifiedKey;

use crate::config::TlsFiles;

/// Reads, parses and checks `files`; the configuration poem builds from the same bytes.
pub fn load(files: &TlsFiles) -> io::Result<RustlsConfig> {
    let cert = read(&files.cert, "certificate")?;
    let key = read(&files.key, "key")?;
    check_pair(&cert, &key).map_err(|err| {
        invalid(format!(
            "TLS certificate {} and key {}: {err}",
            files.cert.display(),
            files.key.display()
        ))
    })?;
    let mut config = RustlsConfig::new().fallback(RustlsCertificate::new().cert(cert).key(key));
    if let Some(path) = &files.client_ca {
        let ca = read(path, "client CA")?;
        check_client_ca(&ca)
            .map_err(|err| invalid(format!("TLS client CA {}: {err}", path.display())))?;
        config = config.client_auth_required(ca);
    }
    Ok(config)
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

/// At least one CA certificate, each one usable as a trust anchor.
fn check_client_ca(pem: &[u8]) -> Result<(), String> {
    let mut roots = RootCertStore::empty();
    for cert in certificates(pem)? {
        roots
            .add(cert)
            .map_err(|err| format!("not a usable CA certificate ({err})"))?;
    }
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    WebPkiClientVerifier::builder_with_provider(roots.into(), provider.into())
        .build()
        .map(drop)
        .map_err(|err| err.to_string())
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
        check_client_ca(cert.as_bytes()).unwrap();
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
        assert!(check_client_ca(b"").is_err());
    }
}
