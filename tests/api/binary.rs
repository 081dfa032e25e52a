//! The built binary, started the way a user starts it.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BINARY: &str = env!("CARGO_BIN_EXE_flux-inputs");

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A minimal HTTP/1.1 GET; returns (status, body).
fn http_get(port: u16, path: &str, token: Option<&str>) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\n{auth}Connection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Ok((status, body))
}

struct Running {
    child: Child,
    port: u16,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(dir: &tempfile::TempDir, envs: &[(&str, &str)]) -> Running {
    let port = free_port();
    let child = Command::new(BINARY)
        .env_clear()
        .env("LISTEN_ADDR", format!("127.0.0.1:{port}"))
        .env("DATABASE_PATH", dir.path().join("inventory.db"))
        .env("RUST_LOG", "warn")
        .envs(envs.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    Running { child, port }
}

fn wait_ready(running: &mut Running) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok((200, _)) = http_get(running.port, "/ready", None) {
            return;
        }
        assert!(
            running.child.try_wait().unwrap().is_none(),
            "the server exited early"
        );
        assert!(Instant::now() < deadline, "/ready within 30 s");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn sigterm(child: &Child) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
fn starts_serves_the_demo_seed_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let mut running = start(&dir, &[("AUTH_TOKEN", "s3cret")]);
    wait_ready(&mut running);
    let (status, body) = http_get(
        running.port,
        "/api/v2/flux/clusters/lab-dev-01.k8s.example.com/namespaces",
        Some("s3cret"),
    )
    .unwrap();
    assert_eq!(status, 200);
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(json["inputs"].as_array().is_some_and(|i| !i.is_empty()));
    assert_eq!(
        http_get(running.port, "/clusters", Some("s3cret"))
            .unwrap()
            .0,
        404,
        "read-only by default"
    );

    sigterm(&running.child);
    let deadline = Instant::now() + Duration::from_secs(15);
    let exit = loop {
        if let Some(status) = running.child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "exits within 15 s of SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(exit.success(), "clean exit: {exit:?}");
    assert!(
        !dir.path().join("inventory.db-wal").exists()
            || std::fs::metadata(dir.path().join("inventory.db-wal"))
                .unwrap()
                .len()
                == 0,
        "WAL checkpointed"
    );
}

#[test]
fn a_restart_keeps_data_and_does_not_reseed() {
    let dir = tempfile::tempdir().unwrap();
    let envs = [("AUTH_TOKEN", "t"), ("API_MODE", "crud")];
    let mut first = start(&dir, &envs);
    wait_ready(&mut first);
    drop(first);
    // Delete every cluster directly in the file, as an operator could through the API.
    let conn = rusqlite::Connection::open(dir.path().join("inventory.db")).unwrap();
    conn.execute_batch("PRAGMA foreign_keys = ON; DELETE FROM clusters;")
        .unwrap();
    drop(conn);
    let mut second = start(&dir, &envs);
    wait_ready(&mut second);
    let (status, body) = http_get(second.port, "/clusters", Some("t")).unwrap();
    assert_eq!(
        (status, body.as_str()),
        (200, "[]"),
        "an emptied database is not re-seeded"
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
