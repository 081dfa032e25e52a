//! The built binary, started the way a user starts it.

use std::process::Command;
use std::time::Duration;

use crate::cli::run as cli;
use crate::helpers::{READ, WRITE};
use crate::process::request;
use crate::process::{BINARY, Server, free_port, get};
use std::path::Path;

#[test]
fn starts_serves_the_demo_seed_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let database = dir.path().join("inventory.db");
    let mut server = Server::ready(&database, &[("AUTH_TOKEN", "s3cret")]);
    let (status, body) = get(
        server.port,
        "/api/v2/flux/clusters/lab-dev-01.k8s.example.com/namespaces",
        Some("s3cret"),
    )
    .unwrap();
    assert_eq!(status, 200);
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(json["inputs"].as_array().is_some_and(|i| !i.is_empty()));
    assert_eq!(
        get(server.port, "/clusters", Some("s3cret")).unwrap().0,
        404,
        "read-only by default"
    );

    server.signal("-TERM");
    let exit = server.wait_exit(Duration::from_secs(15));
    assert!(exit.success(), "clean exit: {exit:?}");
    let wal = dir.path().join("inventory.db-wal");
    assert!(
        !wal.exists() || std::fs::metadata(&wal).unwrap().len() == 0,
        "WAL checkpointed"
    );
}

#[test]
fn a_restart_keeps_data_and_does_not_reseed() {
    let dir = tempfile::tempdir().unwrap();
    let database = dir.path().join("inventory.db");
    let envs = [("AUTH_TOKEN", "t"), ("API_MODE", "crud")];
    let first = Server::ready(&database, &envs);
    for id in ["edge-prod-01", "edge-prod-02", "edge-qa-01", "lab-dev-01"] {
        let (status, _) = crate::process::request(
            first.port,
            "DELETE",
            &format!("/clusters/{id}"),
            Some("t"),
            None,
        )
        .unwrap();
        assert_eq!(status, 200);
    }
    drop(first);
    let second = Server::ready(&database, &envs);
    let (status, body) = get(second.port, "/clusters", Some("t")).unwrap();
    assert_eq!(
        (status, body.as_str()),
        (200, "[]"),
        "an emptied database is not re-seeded"
    );
    assert_eq!(
        get(second.port, "/namespaces/apps", Some("t")).unwrap().0,
        200,
        "definitions kept"
    );
}

#[test]
fn refuses_to_start_without_a_token_or_with_bad_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let cases: [(&[(&str, &str)], &str); 3] = [
        (&[], "AUTH_TOKEN"),
        (
            &[("AUTH_TOKEN", "t"), ("API_MODE", "everything")],
            "API_MODE",
        ),
        (
            &[("AUTH_TOKEN", "t"), ("SEED_FILE", "/does/not/exist.json")],
            "/does/not/exist.json",
        ),
    ];
    for (envs, named) in cases {
        let output = Command::new(BINARY)
            .env_clear()
            .env("LISTEN_ADDR", format!("127.0.0.1:{}", free_port()))
            .env("DATABASE_PATH", dir.path().join("x.db"))
            .envs(envs.iter().copied())
            .output()
            .unwrap();
        assert!(!output.status.success(), "{envs:?} must not start");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains(named),
            "{envs:?}: stderr names {named}: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}

#[test]
fn writes_by_another_process_reach_the_feeds_within_seconds() {
    let dir = tempfile::tempdir().unwrap();
    let database = dir.path().join("inventory.db");
    let server = Server::ready(&database, &[("AUTH_TOKEN", "t")]);
    let path = "/api/v2/flux/clusters/edge-prod-02.k8s.example.com/platform-components";
    let (status, body) = get(server.port, path, Some("t")).unwrap();
    assert_eq!(status, 200);
    assert!(
        body.contains("\"oci_tag\":\"33.2.1\""),
        "cached at the catalog tag"
    );

    // An operator edits the file directly (as the offline CLI does) while the server runs.
    let conn = rusqlite::Connection::open(&database).unwrap();
    conn.busy_timeout(Duration::from_secs(5)).unwrap();
    conn.execute(
        "UPDATE platform_components SET oci_tag = '99.0.0' WHERE id = 'traefik'",
        [],
    )
    .unwrap();
    drop(conn);

    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let (_, body) = get(server.port, path, Some("t")).unwrap();
        if body.contains("\"oci_tag\":\"99.0.0\"") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the external write shows within 5 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn sigterm_lets_an_in_flight_request_finish() {
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::ready(
        &dir.path().join("inventory.db"),
        &[("AUTH_TOKEN", "t"), ("API_MODE", "crud")],
    );
    // A slow client: headers and half the body, then SIGTERM, then the rest.
    let body = br#"{"id": "sent-during-shutdown", "labels": {"slow": "client"}}"#;
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    write!(
        stream,
        "POST /namespaces HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer t\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .unwrap();
    stream.write_all(&body[..10]).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    server.signal("-TERM");
    std::thread::sleep(Duration::from_millis(500));
    assert!(server.child.try_wait().unwrap().is_none(), "still draining");
    stream.write_all(&body[10..]).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 201"), "{response}");
    assert!(server.wait_exit(Duration::from_secs(15)).success());
    let conn = rusqlite::Connection::open(dir.path().join("inventory.db")).unwrap();
    let stored: i64 = conn
        .query_row(
            "SELECT count(*) FROM namespaces WHERE id = 'sent-during-shutdown'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(stored, 1, "the write finished and is durable");
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
    // The log up to the line that says the server serves (the warning comes before it).
    let stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut log = String::new();
    for line in std::io::BufRead::lines(stderr) {
        let Ok(line) = line else { break };
        log.push_str(&line);
        log.push('\n');
        if line.contains("flux-inputs serving") {
            break;
        }
    }
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
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
