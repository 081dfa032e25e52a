//! Findings of the adversarial review, each with the test that showed it: slow and idle
//! clients, unauthenticated bodies, outside writes under a held lock, databases that are not
//! ours or no longer there, and the small ones (headers, audit, bodies, permissions).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use poem::http::{Method, StatusCode};
use serde_json::json;

use crate::cli::run as cli;
use crate::helpers::{READ, TestApp, WRITE};
use crate::process::{BINARY, Server, get, request};

const QA: &str = "edge-qa-01.k8s.example.com";

/// Reads until the peer closes (or `limit` passes); returns what arrived and whether it closed.
fn read_until_closed(stream: &mut TcpStream, limit: Duration) -> (String, bool) {
    stream.set_read_timeout(Some(limit)).unwrap();
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        match stream.read(&mut buffer) {
            Ok(0) => return (String::from_utf8_lossy(&received).into_owned(), true),
            Ok(n) => received.extend_from_slice(&buffer[..n]),
            Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => break,
            Err(err) if err.kind() == std::io::ErrorKind::TimedOut => break,
            Err(_) => return (String::from_utf8_lossy(&received).into_owned(), true),
        }
    }
    (String::from_utf8_lossy(&received).into_owned(), false)
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
fn a_cli_revoke_takes_effect_while_another_process_holds_the_lock() {
    let dir = tempfile::tempdir().unwrap();
    let database = dir.path().join("inventory.db");
    let server = Server::ready(&database, &[("AUTH_TOKEN", "t")]);
    let created = cli(&database, &["token", "create", "--cluster", "edge-qa-01"]);
    let token = String::from_utf8(created.stdout).unwrap().trim().to_owned();
    let feed = format!("/api/v2/flux/clusters/{QA}/namespaces");
    let deadline = Instant::now() + Duration::from_secs(5);
    while get(server.port, &feed, Some(&token)).unwrap().0 != 200 {
        assert!(Instant::now() < deadline, "the new token works");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        cli(&database, &["token", "revoke", "edge-qa-01"])
            .status
            .success()
    );
    // Another process takes the write lock right after the revoke and keeps it.
    let holder = rusqlite::Connection::open(&database).unwrap();
    holder
        .execute_batch(
            "BEGIN IMMEDIATE; UPDATE inventory_revision SET revision = revision WHERE id = 1;",
        )
        .unwrap();
    crate::process::eventually(
        "the revoked token is refused while the lock is held",
        Duration::from_secs(10),
        || get(server.port, &feed, Some(&token)).unwrap().0 == 401,
    );
    holder.execute_batch("ROLLBACK").unwrap();
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
    let (answer, closed) = read_until_closed(&mut stalled, Duration::from_secs(6));
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
    let (_, closed) = read_until_closed(&mut idle, Duration::from_secs(8));
    assert!(closed, "an idle connection is closed");

    // A body that never completes: 408 once the body timeout passes.
    let mut half = connect();
    write!(
        half,
        "POST /namespaces HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {WRITE}\r\n\
         Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"id\":"
    )
    .unwrap();
    let (answer, _) = read_until_closed(&mut half, Duration::from_secs(6));
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
    let (answer, _) = read_until_closed(&mut ninth, Duration::from_secs(5));
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
    let (answer, _) = read_until_closed(&mut big, Duration::from_secs(3));
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
                read_until_closed(&mut stream, Duration::from_secs(5)).0
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

#[test]
fn a_deleted_database_file_turns_ready_and_writes_into_503() {
    let dir = tempfile::tempdir().unwrap();
    let database = dir.path().join("inventory.db");
    let server = Server::ready(
        &database,
        &[
            ("AUTH_TOKEN", READ),
            ("CRUD_AUTH_TOKEN", WRITE),
            ("API_MODE", "crud"),
        ],
    );
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", database.display()));
    }
    let namespace = r#"{"id":"after-delete","labels":{},"annotations":{}}"#;
    let (status, body) = request(
        server.port,
        "POST",
        "/namespaces",
        Some(WRITE),
        Some(namespace),
    )
    .unwrap();
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("deleted or replaced"), "{body}");
    let (status, _) = get(server.port, "/ready", None).unwrap();
    assert_eq!(status, 503);
}

/// Starts the server on `database`, expects it to refuse; its stderr.
fn refused_start(database: &Path) -> String {
    let output = Command::new(BINARY)
        .env_clear()
        .env("AUTH_TOKEN", "t")
        .env("DATABASE_PATH", database)
        .env(
            "LISTEN_ADDR",
            format!("127.0.0.1:{}", crate::process::free_port()),
        )
        .output()
        .unwrap();
    assert!(!output.status.success());
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn a_foreign_or_damaged_database_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let foreign = dir.path().join("invoices.db");
    rusqlite::Connection::open(&foreign)
        .unwrap()
        .execute_batch("CREATE TABLE invoices (id INTEGER PRIMARY KEY, total REAL)")
        .unwrap();
    let before = std::fs::read(&foreign).unwrap();
    let stderr = refused_start(&foreign);
    assert!(stderr.contains("not a flux-inputs database"), "{stderr}");
    assert_eq!(
        std::fs::read(&foreign).unwrap(),
        before,
        "byte for byte untouched"
    );
    for companion in ["invoices.db-wal", "invoices.db-shm"] {
        assert!(!dir.path().join(companion).exists(), "no {companion}");
    }
    let tables: i64 = rusqlite::Connection::open(&foreign)
        .unwrap()
        .query_row(
            "SELECT count(*) FROM sqlite_schema WHERE type = 'table'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(tables, 1, "nothing was added to the foreign file");

    // A database of ours with a page overwritten.
    let database = dir.path().join("inventory.db");
    let mut server = Server::ready(&database, &[("AUTH_TOKEN", "t")]);
    server.signal("-TERM");
    assert!(server.wait_exit(Duration::from_secs(15)).success());
    let mut bytes = std::fs::read(&database).unwrap();
    let pages = bytes.len() / 4096;
    assert!(pages > 4, "a few pages to damage");
    for page in 2..pages {
        bytes[page * 4096..page * 4096 + 64].fill(0xA5);
    }
    std::fs::write(&database, bytes).unwrap();
    let stderr = refused_start(&database);
    assert!(
        stderr.contains("damaged") && stderr.contains("backup"),
        "{stderr}"
    );
    let check = cli(&database, &["check"]);
    assert_eq!(check.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&check.stdout).contains("integrity_check"));
}

#[test]
fn requests_hyper_cannot_parse_get_the_json_error_body() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::ready(&dir.path().join("inventory.db"), &[("AUTH_TOKEN", "t")]);
    let cases: [(Vec<u8>, &str, &str); 3] = [
        (
            b"GET /health HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n".to_vec(),
            "400",
            "bad_request",
        ),
        (
            format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(70_000)).into_bytes(),
            "414",
            "uri_too_long",
        ),
        (
            format!(
                "GET /health HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
                "b".repeat(600_000)
            )
            .into_bytes(),
            "431",
            "headers_too_large",
        ),
    ];
    for (raw, status, code) in cases {
        let mut stream = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
        let _ = stream.write_all(&raw);
        let (answer, _) = read_until_closed(&mut stream, Duration::from_secs(5));
        assert!(
            answer.starts_with(&format!("HTTP/1.1 {status}")),
            "{status}: {answer:.200}"
        );
        let body = answer
            .split_once("\r\n\r\n")
            .map(|(_, b)| b)
            .unwrap_or_default();
        let parsed: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
        assert_eq!(parsed["error"], code, "{answer:.300}");
    }
}

#[test]
fn crud_mode_with_one_shared_token_is_warned_about_at_start_and_in_check() {
    let dir = tempfile::tempdir().unwrap();
    let database = dir.path().join("inventory.db");
    let mut child = Command::new(BINARY)
        .env_clear()
        .env("AUTH_TOKEN", "shared")
        .env("API_MODE", "crud")
        .env("DATABASE_PATH", &database)
        .env(
            "LISTEN_ADDR",
            format!("127.0.0.1:{}", crate::process::free_port()),
        )
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    std::thread::sleep(Duration::from_secs(2));
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
    let log = reader.join().unwrap();
    assert!(log.contains("CRUD_AUTH_TOKEN"), "{log}");
    assert!(!log.contains("\u{1b}["), "no colour codes into a pipe");

    let check = Command::new(BINARY)
        .env_clear()
        .env("AUTH_TOKEN", "shared")
        .env("API_MODE", "crud")
        .env("DATABASE_PATH", &database)
        .arg("check")
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&check.stdout)
            .contains("warning: crud mode without a distinct write token")
    );
}

#[test]
fn backups_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let database = dir.path().join("inventory.db");
    drop(Server::ready(&database, &[("AUTH_TOKEN", "t")]));
    let target = dir.path().join("backup.db");
    assert!(
        cli(&database, &["backup", target.to_str().unwrap()])
            .status
            .success()
    );
    for file in [&database, &target] {
        let mode = std::fs::metadata(file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{}", file.display());
    }
}

#[tokio::test]
async fn every_answer_says_no_store_and_nosniff() {
    let app = TestApp::new();
    for (method, path, token) in [
        (Method::GET, "/health", None),
        (Method::GET, "/api/v2/flux/clusters", Some(READ)),
        (Method::GET, "/api/v2/flux/clusters", None),
        (Method::GET, "/no/such/route", Some(READ)),
    ] {
        let answer = app.call(method, path, token, None).await;
        assert_eq!(answer.header("cache-control"), Some("no-store"), "{path}");
        assert_eq!(
            answer.header("x-content-type-options"),
            Some("nosniff"),
            "{path}"
        );
    }
    let created = app.post("/tokens", &json!({"name": "ci"})).await;
    assert_eq!(created.status, StatusCode::CREATED);
    assert_eq!(
        created.header("cache-control"),
        Some("no-store"),
        "the new token's answer"
    );
}

#[tokio::test]
async fn token_operations_are_audited_without_their_value_and_cannot_be_reverted() {
    let app = TestApp::new();
    let created = app
        .post("/tokens", &json!({"name": "ci", "cluster": "edge-qa-01"}))
        .await;
    let value = created.json["token"].as_str().unwrap().to_owned();
    app.delete("/tokens/ci").await;
    let trail = app
        .call(Method::GET, "/audit?kind=tokens", Some(WRITE), None)
        .await;
    assert_eq!(trail.status, StatusCode::OK);
    let text = String::from_utf8_lossy(&trail.bytes).into_owned();
    assert!(!text.contains(&value), "never the token");
    let entries = trail.json.as_array().unwrap();
    assert_eq!(entries.len(), 2, "{text}");
    assert!(
        text.contains("\"ci\"") && text.contains("edge-qa-01"),
        "{text}"
    );
    let revision = entries[0]["revision"].as_i64().unwrap();
    let revert = app
        .call(
            Method::POST,
            &format!("/audit/{revision}/revert"),
            Some(WRITE),
            None,
        )
        .await;
    revert.expect_error(StatusCode::UNPROCESSABLE_ENTITY, "validation_error");
}

#[tokio::test]
async fn control_characters_and_oversized_integers_are_refused() {
    let app = TestApp::new();
    let put = app
        .put(
            "/clusters/edge-qa-01",
            &json!({"cluster_name": "qa\u{1b}[2J"}),
        )
        .await;
    let message = put.expect_error(StatusCode::BAD_REQUEST, "bad_request");
    assert!(message.contains("cluster_name"), "{message}");
    let raw = r#"{"patches":{"cert-manager":{"replicas":123456789012345678901234567890}}}"#;
    let answer = app
        .client
        .put("/clusters/edge-qa-01")
        .header("Authorization", format!("Bearer {WRITE}"))
        .content_type("application/json")
        .body(raw)
        .send()
        .await;
    answer.assert_status(StatusCode::BAD_REQUEST);
    let feed = app
        .get(&format!("/api/v2/flux/clusters/{QA}/platform-components"))
        .await;
    assert!(!String::from_utf8_lossy(&feed.bytes).contains('\u{1b}'));
}
