//! The network edge: TLS files and the limits every connection lives under.

pub mod limits;
pub mod tls;
