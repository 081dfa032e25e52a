//! The systemd notify protocol, spoken to a datagram socket the test owns.

use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

use crate::process::{Server, get};

/// Reads datagrams until one contains `wanted` (or the deadline passes); returns it.
fn wait_for(socket: &UnixDatagram, wanted: &str, limit: Duration) -> String {
    let deadline = Instant::now() + limit;
    let mut buffer = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "no {wanted} within {limit:?}");
        socket.set_read_timeout(Some(left)).unwrap();
        if let Ok(n) = socket.recv(&mut buffer) {
            let message = String::from_utf8_lossy(&buffer[..n]).into_owned();
            if message.lines().any(|line| line == wanted) {
                return message;
            }
        }
    }
}

#[test]
fn ready_only_when_ready_watchdog_pings_and_stopping_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let socket_path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    let notify = socket_path.display().to_string();
    let mut server = Server::start(
        &dir.path().join("inventory.db"),
        &[
            ("AUTH_TOKEN", "t"),
            ("NOTIFY_SOCKET", &notify),
            ("WATCHDOG_USEC", "400000"),
        ],
    );

    let ready = wait_for(&socket, "READY=1", Duration::from_secs(30));
    // The very first probe after READY=1 must succeed: no retry.
    assert_eq!(get(server.port, "/ready", None).unwrap().0, 200);
    assert!(ready.contains("STATUS=serving 4 clusters"), "{ready}");

    wait_for(&socket, "WATCHDOG=1", Duration::from_secs(5));
    wait_for(&socket, "WATCHDOG=1", Duration::from_secs(5));

    server.signal("-TERM");
    wait_for(&socket, "STOPPING=1", Duration::from_secs(10));
    assert!(server.wait_exit(Duration::from_secs(15)).success());
}

#[test]
fn outside_systemd_notifications_are_silent() {
    let dir = tempfile::tempdir().unwrap();
    // No NOTIFY_SOCKET: starts, serves and stops as usual.
    let mut server = Server::ready(
        &dir.path().join("inventory.db"),
        &[("AUTH_TOKEN", "t"), ("WATCHDOG_USEC", "400000")],
    );
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(get(server.port, "/health", None).unwrap().0, 200);
    server.signal("-TERM");
    assert!(server.wait_exit(Duration::from_secs(15)).success());
}

/// `systemd-analyze` is part of the machine image; the unit must verify clean and keep its
/// exposure score at or below 2.0.
#[test]
fn the_unit_file_verifies_and_is_hardened() {
    let dir = tempfile::tempdir().unwrap();
    let unit = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/systemd/flux-inputs.service"
    ))
    .unwrap();
    assert!(
        unit.contains("Type=notify")
            && unit.contains("WatchdogSec=")
            && unit.contains("LoadCredential=auth_token:")
            && unit.contains("LimitNOFILE=")
    );
    assert!(
        !unit
            .lines()
            .any(|l| l.starts_with("Environment=") && l.contains("TOKEN")),
        "no tokens in Environment="
    );
    // Point ExecStart at the binary under test so verify can check it exists.
    let path = dir.path().join("flux-inputs.service");
    std::fs::write(
        &path,
        unit.replace("/usr/local/bin/flux-inputs", crate::process::BINARY),
    )
    .unwrap();
    let verify = std::process::Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .expect("systemd-analyze is installed");
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stderr)
    );
    assert!(
        verify.stderr.is_empty(),
        "verify is clean: {}",
        String::from_utf8_lossy(&verify.stderr)
    );
    let security = std::process::Command::new("systemd-analyze")
        .args(["security", "--offline=true"])
        .arg(&path)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&security.stdout);
    let score: f64 = text
        .lines()
        .find_map(|l| {
            l.split("Overall exposure level for flux-inputs.service: ")
                .nth(1)
        })
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .expect("an exposure score");
    assert!(score <= 2.0, "exposure {score}");
}
