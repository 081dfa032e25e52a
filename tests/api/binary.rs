//! The built binary, started the way a user starts it.

use std::process::Command;
use std::time::Duration;

use crate::process::{BINARY, Server, free_port, get};

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
