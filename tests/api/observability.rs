//! Metrics, access logs and request ids.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::Duration;

use poem::http::{Method, StatusCode};
use serde_json::json;

use crate::helpers::{READ, TestApp};
use crate::process::{BINARY, free_port, get, request};

#[tokio::test]
async fn metrics_need_the_read_token_and_cover_requests_pool_cache_and_inventory() {
    let app = TestApp::new();
    app.call(Method::GET, "/metrics", None, None)
        .await
        .expect_error(StatusCode::UNAUTHORIZED, "unauthorized");
    app.get("/api/v2/flux/clusters/lab-dev-01.k8s.example.com/namespaces")
        .await;
    app.get("/api/v2/flux/clusters/lab-dev-01.k8s.example.com/namespaces")
        .await;
    app.get("/clusters/nope").await;
    app.post("/namespaces", &json!({"id": "metered"})).await;
    let answer = app.call(Method::GET, "/metrics", Some(READ), None).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert!(
        answer
            .header("content-type")
            .unwrap()
            .starts_with("text/plain")
    );
    let text = String::from_utf8(answer.bytes).unwrap();
    for expected in [
        r#"flux_inputs_requests_total{route="/api/v2/flux/clusters/{cluster_dns}/namespaces",status="200"} 2"#,
        r#"flux_inputs_requests_total{route="/clusters/{id}",status="404"} 1"#,
        r#"flux_inputs_requests_total{route="/namespaces",status="201"} 1"#,
        r#"flux_inputs_request_duration_seconds_count{route="/api/v2/flux/clusters/{cluster_dns}/namespaces"} 2"#,
        r#"flux_inputs_feed_cache_total{outcome="hit"} 1"#,
        r#"flux_inputs_inventory_items{kind="clusters"} 4"#,
        r#"flux_inputs_inventory_items{kind="namespaces"} 5"#,
        "flux_inputs_db_connections_in_use ",
        "flux_inputs_database_up 1",
    ] {
        assert!(text.contains(expected), "missing {expected} in:\n{text}");
    }
    let last_write = text
        .lines()
        .find_map(|l| l.strip_prefix("flux_inputs_last_write_timestamp_seconds "))
        .unwrap();
    assert!(
        last_write.parse::<u64>().unwrap() > 1_700_000_000,
        "set by the write"
    );
}

#[tokio::test]
async fn responses_carry_a_request_id_and_keep_a_sane_one_from_the_client() {
    let app = TestApp::new();
    let generated = app.get("/health").await;
    let id = generated.header("x-request-id").expect("a request id");
    assert!(!id.is_empty());
    let answer = app
        .raw(
            Method::GET,
            "/health",
            &[("X-Request-Id", "flux-abc.123")],
            Vec::new(),
        )
        .await;
    assert_eq!(answer.header("x-request-id"), Some("flux-abc.123"));
    let answer = app
        .raw(
            Method::GET,
            "/health",
            &[("X-Request-Id", "bad id\twith spaces")],
            Vec::new(),
        )
        .await;
    assert_ne!(answer.header("x-request-id"), Some("bad id\twith spaces"));
}

/// A good poll and `/health` take the short way (`api::short_way`): the answer carries the same
/// headers as any other, and whatever is not a good poll is answered the full way as before.
#[tokio::test]
async fn a_poll_on_the_short_way_answers_as_the_full_way_does() {
    let app = TestApp::new();
    let feed = "/api/v2/flux/clusters/lab-dev-01.k8s.example.com/platform-components";
    let bearer = format!("Bearer {READ}");
    let poll = app
        .raw(
            Method::GET,
            feed,
            &[("Authorization", &bearer), ("X-Request-Id", "poll-7")],
            Vec::new(),
        )
        .await;
    assert_eq!(poll.status, StatusCode::OK);
    assert_eq!(poll.header("x-request-id"), Some("poll-7"));
    assert_eq!(poll.header("cache-control"), Some("no-store"));
    assert_eq!(poll.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(
        poll.header("content-type"),
        Some("application/json; charset=utf-8")
    );
    let inputs: serde_json::Value = serde_json::from_slice(&poll.bytes).unwrap();
    assert!(inputs["inputs"].as_array().is_some_and(|i| !i.is_empty()));
    // The liveness probe takes it too, with the same answer as the full way's.
    let health = app.get("/health").await;
    assert_eq!(health.status, StatusCode::OK);
    assert_eq!(health.json, json!({"status": "ok"}));
    assert_eq!(health.header("cache-control"), Some("no-store"));
    assert_eq!(
        health.header("content-type"),
        Some("application/json; charset=utf-8")
    );
    // A HEAD is never short: the full way answers it.
    let head = app
        .raw(
            Method::HEAD,
            feed,
            &[("Authorization", &bearer)],
            Vec::new(),
        )
        .await;
    assert_eq!(head.status, StatusCode::OK);
    // Not good polls: no token, a wrong one, an unknown cluster, a scoped token of another.
    app.call(Method::GET, feed, None, None)
        .await
        .expect_error(StatusCode::UNAUTHORIZED, "unauthorized");
    app.call(Method::GET, feed, Some("wrong"), None)
        .await
        .expect_error(StatusCode::UNAUTHORIZED, "unauthorized");
    app.get("/api/v2/flux/clusters/nowhere.example.com/namespaces")
        .await
        .expect_error(StatusCode::NOT_FOUND, "not_found");
    let scoped = app
        .post(
            "/tokens",
            &json!({"name": "edge", "cluster": "edge-prod-01"}),
        )
        .await;
    let token = scoped.json["token"].as_str().unwrap().to_owned();
    app.call(Method::GET, feed, Some(&token), None)
        .await
        .expect_error(StatusCode::FORBIDDEN, "forbidden");
    let own = app
        .call(
            Method::GET,
            "/api/v2/flux/clusters/edge-prod-01.k8s.example.com/namespaces",
            Some(&token),
            None,
        )
        .await;
    assert_eq!(own.status, StatusCode::OK);
}

#[test]
fn json_access_log_has_one_line_per_request_and_never_a_token() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let metrics_port = free_port();
    let mut child = Command::new(BINARY)
        .env_clear()
        .env("AUTH_TOKEN", "super-secret-token")
        .env("LISTEN_ADDR", format!("127.0.0.1:{port}"))
        .env("METRICS_ADDR", format!("127.0.0.1:{metrics_port}"))
        .env("DATABASE_PATH", dir.path().join("inventory.db"))
        .env("LOG_FORMAT", "json")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while get(port, "/ready", None).map(|r| r.0).unwrap_or(0) != 200 {
        assert!(std::time::Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(25));
    }
    let feed = "/api/v2/flux/clusters/lab-dev-01.k8s.example.com/rolebindings";
    assert_eq!(get(port, feed, Some("super-secret-token")).unwrap().0, 200);
    assert_eq!(get(port, feed, Some("wrong-token")).unwrap().0, 401);
    // The dedicated metrics listener needs no token; the main one does.
    let (status, body) = get(metrics_port, "/metrics", None).unwrap();
    assert_eq!(status, 200);
    assert!(body.contains("flux_inputs_requests_total"), "{body}");
    assert_eq!(get(port, "/metrics", None).unwrap().0, 401);
    let _ = request(port, "GET", "/health", None, None);

    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    child.wait().unwrap();
    let mut logs = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut logs)
        .unwrap();
    assert!(
        !logs.contains("super-secret-token") && !logs.contains("wrong-token"),
        "no token in logs:\n{logs}"
    );
    let access: Vec<serde_json::Value> = logs
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|line| line["target"] == "flux_inputs::access")
        .collect();
    let feed_lines: Vec<_> = access.iter().filter(|l| l["path"] == feed).collect();
    assert_eq!(feed_lines.len(), 2, "one line per request:\n{logs}");
    assert_eq!(feed_lines[0]["status"], 200);
    assert_eq!(feed_lines[1]["status"], 401);
    assert!(
        feed_lines
            .iter()
            .all(|l| l["request_id"].as_str().is_some_and(|id| !id.is_empty()))
    );
}
