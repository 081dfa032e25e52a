//! The network edge: TLS (files, acceptor, client certificates as identity) and the limits
//! every connection lives under.

pub mod identity;
pub mod limits;
pub mod tls;
