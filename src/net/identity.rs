//! Client certificates as identity (README, "Safety rails"). The TLS acceptor verifies a client's
//! certificate against `client_ca` during the handshake; the certificate then travels with
//! each request of the connection inside its remote address, and `certifies` tells whether
//! it names a given cluster.

use std::borrow::Cow;

use poem::Addr;
use poem::web::RemoteAddr;
use rustls::pki_types::{CertificateDer, DnsName, ServerName};

/// The `Addr::Custom` kind of a remote address that carries a verified certificate.
const WITH_CERTIFICATE: &str = "tls-client";

/// `remote`, carrying `leaf` (already verified by the handshake).
pub fn with_certificate(remote: &RemoteAddr, leaf: &CertificateDer<'_>) -> RemoteAddr {
    let mut text = format!("{remote}#");
    for byte in leaf.as_ref() {
        text.push_str(&format!("{byte:02x}"));
    }
    RemoteAddr(Addr::Custom(WITH_CERTIFICATE, Cow::Owned(text)))
}

/// The peer's address, for logs (never the certificate).
pub fn peer(remote: &RemoteAddr) -> String {
    match &remote.0 {
        Addr::Custom(WITH_CERTIFICATE, text) => {
            text.split_once('#').map_or("", |(peer, _)| peer).to_owned()
        }
        other => other.to_string(),
    }
}

/// The peer's IP address, if the remote address is a socket's.
pub fn peer_ip(remote: &RemoteAddr) -> Option<std::net::IpAddr> {
    match &remote.0 {
        Addr::SocketAddr(addr) => Some(addr.ip()),
        Addr::Custom(WITH_CERTIFICATE, text) => {
            let peer = text.split_once('#')?.0;
            let socket = peer.strip_prefix("socket://").unwrap_or(peer);
            socket
                .parse::<std::net::SocketAddr>()
                .ok()
                .map(|addr| addr.ip())
        }
        _ => None,
    }
}

fn certificate(remote: &RemoteAddr) -> Option<CertificateDer<'static>> {
    let Addr::Custom(WITH_CERTIFICATE, text) = &remote.0 else {
        return None;
    };
    let hex = text.split_once('#')?.1.as_bytes();
    let der = hex
        .chunks(2)
        .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok())
        .collect::<Option<Vec<u8>>>()?;
    Some(CertificateDer::from(der))
}

/// Whether the connection's verified certificate is the identity of the cluster `dns`: its
/// one DNS name is `dns`, exactly. A certificate naming several DNS names would speak for
/// several clusters, and a wildcard name for many, so either is no cluster's identity (its
/// bearer token still applies).
pub fn certifies(remote: &RemoteAddr, dns: &str) -> bool {
    let Some(der) = certificate(remote) else {
        return false;
    };
    let Ok(cert) = webpki::EndEntityCert::try_from(&der) else {
        return false;
    };
    let mut names = cert.valid_dns_names();
    if names.next().is_none() || names.next().is_some() {
        return false;
    }
    let fits = |name: &str| {
        DnsName::try_from(name).is_ok_and(|name| {
            cert.verify_is_valid_for_subject_name(&ServerName::DnsName(name))
                .is_ok()
        })
    };
    let sibling = match dns.split_once('.') {
        Some((_, parent)) => format!("not-a-cluster-7f3a.{parent}"),
        None => "not-a-cluster-7f3a".to_owned(),
    };
    fits(dns) && !fits(&sibling)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn certificate_for(names: &[&str]) -> CertificateDer<'static> {
        let key = rcgen::KeyPair::generate().unwrap();
        let names = names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>();
        let cert = rcgen::CertificateParams::new(names)
            .unwrap()
            .self_signed(&key)
            .unwrap();
        cert.der().clone()
    }

    fn remote() -> RemoteAddr {
        RemoteAddr(Addr::SocketAddr("127.0.0.1:4000".parse().unwrap()))
    }

    #[test]
    fn a_certificate_names_exactly_its_clusters() {
        let addr = with_certificate(&remote(), &certificate_for(&["edge-qa-01.k8s.example.com"]));
        assert!(certifies(&addr, "edge-qa-01.k8s.example.com"));
        assert!(!certifies(&addr, "edge-qa-02.k8s.example.com"));
        assert_eq!(peer(&addr), "socket://127.0.0.1:4000");
        assert_eq!(peer_ip(&addr), Some("127.0.0.1".parse().unwrap()));
        let wildcard = with_certificate(&remote(), &certificate_for(&["*.k8s.example.com"]));
        assert!(!certifies(&wildcard, "edge-qa-01.k8s.example.com"));
        assert!(
            !certifies(&remote(), "edge-qa-01.k8s.example.com"),
            "no certificate"
        );
        let two = with_certificate(
            &remote(),
            &certificate_for(&["edge-qa-01.k8s.example.com", "edge-qa-02.k8s.example.com"]),
        );
        assert!(
            !certifies(&two, "edge-qa-01.k8s.example.com"),
            "names two clusters"
        );
        assert!(!certifies(&two, "edge-qa-02.k8s.example.com"));
    }
}
