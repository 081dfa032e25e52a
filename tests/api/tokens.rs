//! Named read tokens: cluster-scoped and fleet-wide, hashed at rest, revocable.

use std::time::Duration;

use poem::http::{Method, StatusCode};
use serde_json::json;

use crate::cli::run as cli;
use crate::helpers::WRITE;
use crate::helpers::{READ, TestApp};
use crate::process::{Server, get};
use std::time::Instant;

const QA: &str = "edge-qa-01.k8s.example.com";

#[tokio::test]
async fn a_cluster_token_reads_only_its_own_feeds() {
    let app = TestApp::new();
    let created = app
        .post(
            "/tokens",
            &json!({"name": "edge-qa-01", "cluster": "edge-qa-01"}),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.json);
    let token = created.json["token"].as_str().unwrap().to_owned();
    assert!(token.starts_with("fi_") && token.len() > 40);

    for feed in ["platform-components", "namespaces", "rolebindings"] {
        let answer = app
            .call(
                Method::GET,
                &format!("/api/v2/flux/clusters/{QA}/{feed}"),
                Some(&token),
                None,
            )
            .await;
        assert_eq!(answer.status, StatusCode::OK, "{feed}");
    }
    for path in [
        "/api/v2/flux/clusters/lab-dev-01.k8s.example.com/namespaces",
        "/api/v2/flux/clusters",
        "/clusters",
        "/clusters/edge-qa-01",
        "/status/clusters",
        "/metrics",
    ] {
        let answer = app.call(Method::GET, path, Some(&token), None).await;
        let message = answer.expect_error(StatusCode::FORBIDDEN, "forbidden");
        assert!(message.contains(QA), "{path}: {message}");
    }
    let write = app
        .call(
            Method::POST,
            "/namespaces",
            Some(&token),
            Some(&json!({"id": "x"})),
        )
        .await;
    write.expect_error(StatusCode::UNAUTHORIZED, "unauthorized");
    assert_eq!(
        app.call(Method::GET, "/health", Some(&token), None)
            .await
            .status,
        StatusCode::OK
    );

    // A renamed cluster: the token follows its cluster, not the old name.
    app.put(
        "/clusters/edge-qa-01",
        &json!({"cluster_dns": "qa.example.net"}),
    )
    .await;
    let moved = app
        .call(
            Method::GET,
            "/api/v2/flux/clusters/qa.example.net/namespaces",
            Some(&token),
            None,
        )
        .await;
    assert_eq!(moved.status, StatusCode::OK);
}

#[tokio::test]
async fn fleet_tokens_listing_revocation_and_rotation() {
    let app = TestApp::new();
    let fleet = app
        .post("/tokens", &json!({"name": "ci-reader"}))
        .await
        .json["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let second = app
        .post("/tokens", &json!({"name": "ci-reader-2"}))
        .await
        .json["token"]
        .as_str()
        .unwrap()
        .to_owned();
    for token in [&fleet, &second, &READ.to_owned()] {
        assert_eq!(
            app.call(Method::GET, "/clusters", Some(token), None)
                .await
                .status,
            StatusCode::OK,
            "all valid at once"
        );
    }
    app.post("/tokens", &json!({"name": "ci-reader"}))
        .await
        .expect_error(StatusCode::CONFLICT, "conflict");
    app.post("/tokens", &json!({"name": "x", "cluster": "no-such"}))
        .await
        .expect_error(StatusCode::UNPROCESSABLE_ENTITY, "validation_error");
    let listed = app
        .call(Method::GET, "/tokens", Some(crate::helpers::WRITE), None)
        .await;
    assert_eq!(listed.json.as_array().unwrap().len(), 2);
    assert!(
        !listed.json.to_string().contains(&fleet),
        "values are never listed"
    );
    let by_reader = app.call(Method::GET, "/tokens", Some(READ), None).await;
    by_reader.expect_error(StatusCode::UNAUTHORIZED, "unauthorized");

    assert_eq!(app.delete("/tokens/ci-reader").await.status, StatusCode::OK);
    let revoked = app.call(Method::GET, "/clusters", Some(&fleet), None).await;
    revoked.expect_error(StatusCode::UNAUTHORIZED, "unauthorized");
    assert_eq!(
        app.call(Method::GET, "/clusters", Some(&second), None)
            .await
            .status,
        StatusCode::OK
    );
    app.delete("/tokens/ci-reader")
        .await
        .expect_error(StatusCode::NOT_FOUND, "not_found");
}

#[test]
fn tokens_from_the_command_line_are_hashed_and_honoured_by_a_running_server() {
    let dir = tempfile::tempdir().unwrap();
    let database = dir.path().join("inventory.db");
    let server = Server::ready(&database, &[("AUTH_TOKEN", "t")]);
    let run = |args: &[&str]| crate::cli::run(&database, args);
    let created = run(&["token", "create", "--cluster", "edge-qa-01"]);
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );
    let token = String::from_utf8(created.stdout).unwrap().trim().to_owned();
    let feed = format!("/api/v2/flux/clusters/{QA}/namespaces");
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while get(server.port, &feed, Some(&token)).unwrap().0 != 200 {
        assert!(
            std::time::Instant::now() < deadline,
            "the server picks the new token up"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let file = std::fs::read(&database).unwrap();
    let wal = std::fs::read(dir.path().join("inventory.db-wal")).unwrap_or_default();
    for bytes in [&file, &wal] {
        assert!(
            !bytes.windows(token.len()).any(|w| w == token.as_bytes()),
            "never stored in plain text"
        );
    }
    let listed = String::from_utf8(run(&["token", "list"]).stdout).unwrap();
    assert!(
        listed.contains(r#""name":"edge-qa-01""#) && !listed.contains(&token),
        "{listed}"
    );

    assert!(run(&["token", "revoke", "edge-qa-01"]).status.success());
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while get(server.port, &feed, Some(&token)).unwrap().0 != 401 {
        assert!(
            std::time::Instant::now() < deadline,
            "revocation reaches the server"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        run(&["token", "revoke", "edge-qa-01"]).status.code(),
        Some(3)
    );
}

/// A revoke from the command line is seen however busy the server is with its own commits
/// (events arriving all the time, each batch a commit of the server's).
#[test]
fn a_cli_revoke_is_seen_while_the_server_commits_events() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let dir = tempfile::tempdir().unwrap();
    let database = dir.path().join("inventory.db");
    let server = Server::ready(&database, &[("AUTH_TOKEN", "t")]);
    let run = |args: &[&str]| crate::cli::run(&database, args);
    let created = run(&["token", "create", "--cluster", "edge-qa-01"]);
    let token = String::from_utf8(created.stdout).unwrap().trim().to_owned();
    let feed = format!("/api/v2/flux/clusters/{QA}/namespaces");
    crate::process::eventually("the new token works", Duration::from_secs(10), || {
        get(server.port, &feed, Some(&token)).unwrap().0 == 200
    });
    let stop = Arc::new(AtomicBool::new(false));
    let poster = {
        let (stop, port) = (stop.clone(), server.port);
        std::thread::spawn(move || {
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                let event = serde_json::json!({
                    "involvedObject": {"kind": "Kustomization", "namespace": "flux-system", "name": "apps"},
                    "severity": "info", "timestamp": "2026-12-01T10:00:00Z",
                    "message": format!("tick {n}"), "reason": "ReconciliationSucceeded",
                });
                let path = format!("/api/v2/flux/clusters/{QA}/events");
                let answer = crate::process::request(
                    port,
                    "POST",
                    &path,
                    Some("t"),
                    Some(&event.to_string()),
                );
                assert_eq!(answer.unwrap().0, 202);
                n += 1;
            }
            n
        })
    };
    assert!(run(&["token", "revoke", "edge-qa-01"]).status.success());
    crate::process::eventually(
        "the revoked token is refused",
        Duration::from_secs(10),
        || get(server.port, &feed, Some(&token)).unwrap().0 == 401,
    );
    stop.store(true, Ordering::Relaxed);
    assert!(
        poster.join().unwrap() > 0,
        "events were committed meanwhile"
    );
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
