//! What a client without a token can hold: connection slots, and for how long (README, "Security",
//! README "Security"). Raw sockets against a small cap on the real binary.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::helpers::{READ, WRITE};
use crate::process::request;
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

/// `read_until_closed`, as text.
pub fn read_text_until_closed(stream: &mut TcpStream, limit: Duration) -> (String, bool) {
    let (bytes, closed) = read_until_closed(stream, limit);
    (String::from_utf8_lossy(&bytes).into_owned(), closed)
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
    // A HEADERS frame cut before END_HEADERS never gets that far either. Sent with the
    // preface in one write: the server may close (and reset) right after the preface.
    let mut cut = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    let cut_headers = [H2_OPENING, b"\x00\x00\x10\x01\x00\x00\x00\x00\x01"].concat();
    cut.write_all(&cut_headers).unwrap();
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

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[test]
fn slow_idle_and_half_sent_clients_are_cut_off_and_the_connection_cap_holds() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::ready(
        &dir.path().join("inventory.db"),
        &[
            ("AUTH_TOKEN", READ),
            ("CRUD_AUTH_TOKEN", WRITE),
            ("API_MODE", "crud"),
            ("HEADER_TIMEOUT_SECONDS", "1"),
            ("BODY_TIMEOUT_SECONDS", "1"),
            ("IDLE_TIMEOUT_SECONDS", "2"),
            ("MAX_CONNECTIONS", "8"),
        ],
    );
    let connect = || TcpStream::connect(("127.0.0.1", server.port)).unwrap();

    // Headers that stop half way: cut off after the header timeout, with a JSON 408.
    let mut stalled = connect();
    stalled
        .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    let (answer, closed) = read_text_until_closed(&mut stalled, Duration::from_secs(6));
    assert!(closed, "stalled headers are cut off");
    assert!(
        answer.contains("408") && answer.contains("request_timeout"),
        "{answer}"
    );

    // Headers trickled a byte at a time keep the connection busy but not alive.
    let mut trickle = connect();
    let started = Instant::now();
    let mut cut = false;
    for byte in b"GET /health HTTP/1.1\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
        .iter()
        .cycle()
    {
        if trickle.write_all(&[*byte]).is_err() || started.elapsed() > Duration::from_secs(8) {
            cut = trickle.write_all(b"x").is_err() || started.elapsed() <= Duration::from_secs(8);
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(cut, "a trickling client is cut off by the header timeout");

    // A connection that says nothing is closed after the idle timeout.
    let mut idle = connect();
    let (_, closed) = read_text_until_closed(&mut idle, Duration::from_secs(8));
    assert!(closed, "an idle connection is closed");

    // A body that never completes: 408 once the body timeout passes.
    let mut half = connect();
    write!(
        half,
        "POST /namespaces HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {WRITE}\r\n\
         Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"id\":"
    )
    .unwrap();
    let (answer, _) = read_text_until_closed(&mut half, Duration::from_secs(6));
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("request_timeout"), "{answer}");

    // At most 8 connections are served; a ninth waits for a free slot.
    let held: Vec<TcpStream> = (0..8).map(|_| connect()).collect();
    let mut ninth = connect();
    ninth
        .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    ninth
        .set_read_timeout(Some(Duration::from_millis(700)))
        .unwrap();
    let mut buffer = [0u8; 256];
    assert!(
        ninth.read(&mut buffer).is_err(),
        "not served while 8 are open"
    );
    drop(held);
    let (answer, _) = read_text_until_closed(&mut ninth, Duration::from_secs(5));
    assert!(
        answer.starts_with("HTTP/1.1 200"),
        "served once a slot frees: {answer}"
    );
}

#[test]
fn unauthenticated_bodies_are_refused_before_they_are_read() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::ready(
        &dir.path().join("inventory.db"),
        &[
            ("AUTH_TOKEN", READ),
            ("CRUD_AUTH_TOKEN", WRITE),
            ("API_MODE", "crud"),
        ],
    );
    // 20 MiB announced, nothing sent: the answer is 401, not 413 and not a wait.
    let mut big = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    big.write_all(
        b"POST /namespaces HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
          Content-Length: 20971520\r\n\r\n",
    )
    .unwrap();
    let (answer, _) = read_text_until_closed(&mut big, Duration::from_secs(3));
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
    assert!(answer.contains("unauthorized"), "{answer}");
    // The read token cannot write either, and is told so before its body is read.
    let (status, _) = request(server.port, "POST", "/namespaces", Some(READ), Some("{}")).unwrap();
    assert_eq!(status, 401);

    // 60 clients without a token each push 1 MiB: memory stays flat.
    let before = rss_kib(server.child.id());
    let body = vec![b' '; 1024 * 1024];
    let clients: Vec<_> = (0..60)
        .map(|_| {
            let body = body.clone();
            let port = server.port;
            std::thread::spawn(move || {
                let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
                let _ = stream.write_all(
                    format!(
                        "PUT /clusters/edge-qa-01 HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
                         Content-Length: {}\r\n\r\n",
                        body.len()
                    )
                    .as_bytes(),
                );
                let _ = stream.write_all(&body);
                read_text_until_closed(&mut stream, Duration::from_secs(5)).0
            })
        })
        .collect();
    for client in clients {
        let answer = client.join().unwrap();
        assert!(
            answer.is_empty() || answer.starts_with("HTTP/1.1 401"),
            "{answer}"
        );
    }
    let grown = rss_kib(server.child.id()).saturating_sub(before);
    assert!(grown < 16 * 1024, "RSS grew by {grown} KiB");
}
