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

/// The edge-topology units (README, "Edge replicas on Litestream") verify clean and are as hardened as the service;
/// the hub and replica drop-ins verify on top of it.
#[test]
fn the_litestream_units_and_drop_ins_verify_and_are_hardened() {
    let dir = tempfile::tempdir().unwrap();
    let repo = env!("CARGO_MANIFEST_DIR");
    let litestream = std::path::Path::new(repo).join("target/tools/bin/litestream");
    // verify wants every ExecStart binary to exist: point them at the real ones.
    let localise = |text: String| {
        text.replace("/usr/local/bin/litestream", litestream.to_str().unwrap())
            .replace(
                "/usr/local/lib/flux-inputs/flux-inputs-follow",
                &format!("{repo}/systemd/flux-inputs-follow"),
            )
            .replace("/usr/local/bin/flux-inputs", crate::process::BINARY)
    };
    let analyze = |args: &[&str], unit: &std::path::Path| {
        std::process::Command::new("systemd-analyze")
            .args(args)
            .arg(unit)
            .output()
            .expect("systemd-analyze is installed")
    };
    for name in [
        "flux-inputs-litestream.service",
        "flux-inputs-follow.service",
    ] {
        let unit = std::fs::read_to_string(format!("{repo}/systemd/{name}")).unwrap();
        assert!(unit.contains("User=flux-inputs") && unit.contains("DynamicUser=yes"));
        let path = dir.path().join(name);
        std::fs::write(&path, localise(unit)).unwrap();
        let verify = analyze(&["verify"], &path);
        assert!(
            verify.status.success() && verify.stderr.is_empty(),
            "{name}: {}",
            String::from_utf8_lossy(&verify.stderr)
        );
        let security = analyze(&["security", "--offline=true"], &path);
        let text = String::from_utf8_lossy(&security.stdout);
        let score: f64 = text
            .lines()
            .find_map(|l| {
                l.split(&format!("Overall exposure level for {name}: "))
                    .nth(1)
            })
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .expect("an exposure score");
        assert!(score <= 2.0, "{name}: exposure {score}");
    }
    for (drop_in, role) in [
        ("flux-inputs-hub.conf", "ROLE=hub"),
        ("flux-inputs-replica.conf", "ROLE=replica"),
    ] {
        let root = dir.path().join(drop_in.trim_end_matches(".conf"));
        std::fs::create_dir_all(root.join("flux-inputs.service.d")).unwrap();
        let unit = std::fs::read_to_string(format!("{repo}/systemd/flux-inputs.service")).unwrap();
        std::fs::write(root.join("flux-inputs.service"), localise(unit)).unwrap();
        let text = std::fs::read_to_string(format!("{repo}/systemd/{drop_in}")).unwrap();
        assert!(text.contains(role) && text.contains("User=flux-inputs"));
        std::fs::write(root.join("flux-inputs.service.d").join(drop_in), text).unwrap();
        // verify reads drop-ins beside the unit, and warns about any key it does not know.
        let verify = analyze(&["verify"], &root.join("flux-inputs.service"));
        assert!(
            verify.status.success() && verify.stderr.is_empty(),
            "{drop_in}: {}",
            String::from_utf8_lossy(&verify.stderr)
        );
    }
}
