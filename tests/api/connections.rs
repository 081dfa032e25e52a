//! What a client without a token can hold: connection slots, and for how long (contract §17,
//! README "Security"). Raw sockets against a small cap on the real binary.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::process::{Server, get};

/// Reads until the peer closes (or `limit` passes); returns what arrived and whether it closed.
pub fn read_until_closed(stream: &mut TcpStream, limit: Duration) -> (Vec<u8>, bool) {
    stream
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        match stream.read(&mut buffer) {
            Ok(0) => return (received, true),
            Ok(n) => received.extend_from_slice(&buffer[..n]),
            Err(err) if matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => return (received, true),
        }
    }
    (received, false)
}

/// The HTTP/2 connection preface and an empty SETTINGS frame: what an h2c client sends first.
const H2_OPENING: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00";

#[test]
fn http2_connections_are_told_to_use_http1_and_hold_no_slot() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::ready(
        &dir.path().join("inventory.db"),
        &[("AUTH_TOKEN", "t"), ("MAX_CONNECTIONS", "4")],
    );
    // Five times the cap, each left open by the client.
    let mut held: Vec<TcpStream> = (0..20)
        .map(|_| {
            let mut stream = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
            stream.write_all(H2_OPENING).unwrap();
            stream
        })
        .collect();
    for stream in &mut held {
        let (answer, closed) = read_until_closed(stream, Duration::from_secs(10));
        assert!(closed, "the server closes an HTTP/2 connection");
        // A SETTINGS frame, then GOAWAY (type 7) with HTTP_1_1_REQUIRED (0xd).
        assert_eq!(answer.len(), 26, "{answer:?}");
        assert_eq!(answer[12], 0x7, "GOAWAY: {answer:?}");
        assert_eq!(&answer[22..26], &[0, 0, 0, 0xd], "HTTP_1_1_REQUIRED");
    }
    // A HEADERS frame cut before END_HEADERS never gets that far either.
    let mut cut = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    cut.write_all(H2_OPENING).unwrap();
    cut.write_all(b"\x00\x00\x10\x01\x00\x00\x00\x00\x01")
        .unwrap();
    assert!(read_until_closed(&mut cut, Duration::from_secs(10)).1);
    let (status, body) = get(server.port, "/health", None).unwrap();
    assert_eq!(status, 200, "{body}");
}

#[test]
fn a_connection_that_sends_nothing_is_closed_after_the_header_timeout_not_the_idle_one() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::ready(
        &dir.path().join("inventory.db"),
        &[
            ("AUTH_TOKEN", "t"),
            ("MAX_CONNECTIONS", "8"),
            ("HEADER_TIMEOUT_SECONDS", "1"),
            ("IDLE_TIMEOUT_SECONDS", "600"),
        ],
    );
    let mut silent: Vec<TcpStream> = (0..8)
        .map(|_| TcpStream::connect(("127.0.0.1", server.port)).unwrap())
        .collect();
    for stream in &mut silent {
        let (answer, closed) = read_until_closed(stream, Duration::from_secs(15));
        assert!(
            closed,
            "a silent connection is closed long before the idle timeout"
        );
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    }
    // After a served request, the same connection may idle (keep-alive) past the header timeout.
    let mut kept = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    kept.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let (answer, closed) = read_until_closed(&mut kept, Duration::from_secs(3));
    assert!(!closed, "kept alive between requests");
    assert!(String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 200"));
    kept.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let (answer, closed) = read_until_closed(&mut kept, Duration::from_secs(5));
    assert!(closed && String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 200"));
}

#[test]
fn an_idle_keep_alive_connection_is_closed_after_the_idle_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::ready(
        &dir.path().join("inventory.db"),
        &[
            ("AUTH_TOKEN", "t"),
            ("HEADER_TIMEOUT_SECONDS", "30"),
            ("IDLE_TIMEOUT_SECONDS", "1"),
        ],
    );
    let mut idle = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    idle.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let (answer, closed) = read_until_closed(&mut idle, Duration::from_secs(15));
    assert!(String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 200"));
    assert!(closed, "closed without a byte from the server");
    assert!(!String::from_utf8_lossy(&answer).contains("408"));
}
