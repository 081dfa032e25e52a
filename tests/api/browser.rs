//! The console in a real browser: `tests/browser/console.mjs` drives Debian's chromium with
//! playwright-core against the built binary on 127.0.0.1 (tests/prerequisites.sh installs
//! both). Screenshots of every page land in `target/screenshots/`.

use std::process::Command;

use crate::process::Server;

#[test]
fn the_console_works_in_a_real_browser() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::ready(
        &dir.path().join("inventory.db"),
        &[
            ("API_MODE", "crud"),
            ("AUTH_TOKEN", "browser-read"),
            ("CRUD_AUTH_TOKEN", "browser-write"),
        ],
    );
    let repo = env!("CARGO_MANIFEST_DIR");
    let output = Command::new("node")
        .arg(format!("{repo}/tests/browser/console.mjs"))
        .current_dir(repo)
        .env("BASE", format!("http://127.0.0.1:{}", server.port))
        .env("WRITE_TOKEN", "browser-write")
        .env("SCREENSHOTS", format!("{repo}/target/screenshots"))
        .output()
        .expect("node runs: run tests/prerequisites.sh");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    eprintln!("{stdout}");
    for page in [
        "login",
        "fleet",
        "fleet-laptop",
        "cluster",
        "catalog",
        "rollouts",
        "audit",
        "tokens",
        "cluster-preview",
        "rollout",
        "overlays",
        "overlay",
        "overlay-preview",
        "cluster-layers",
    ] {
        let shot = std::path::Path::new(repo).join(format!("target/screenshots/{page}.png"));
        assert!(shot.metadata().is_ok_and(|m| m.len() > 1000), "{page}.png");
    }
}
