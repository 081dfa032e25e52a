//! Malformed requests: every one answers the JSON error body with a 4xx naming the problem,
//! and none changes anything.

use poem::http::{Method, StatusCode};
use serde_json::json;

use crate::connections::read_text_until_closed as read_until_closed;
use crate::helpers::READ;
use crate::helpers::{TestApp, WRITE};
use crate::process::Server;
use std::io::Write as _;
use std::net::TcpStream;
use std::time::Duration;
const QA: &str = "edge-qa-01.k8s.example.com";

const AUTH: (&str, &str) = ("Authorization", "Bearer write-token");
const JSON: (&str, &str) = ("Content-Type", "application/json");

#[tokio::test]
async fn malformed_json_is_400() {
    let app = TestApp::new();
    let answer = app
        .raw(
            Method::POST,
            "/clusters",
            &[AUTH, JSON],
            b"{\"id\": ".to_vec(),
        )
        .await;
    let message = answer.expect_error(StatusCode::BAD_REQUEST, "bad_request");
    assert!(message.contains("not valid JSON"), "{message}");
    let empty = app
        .raw(Method::POST, "/namespaces", &[AUTH, JSON], Vec::new())
        .await;
    empty.expect_error(StatusCode::BAD_REQUEST, "bad_request");
}

#[tokio::test]
async fn missing_field_wrong_type_and_unknown_enum_name_the_field() {
    let app = TestApp::new();
    let cases = [
        (
            json!({"id": "c", "cluster_name": "c", "environment": "dev", "platform_components": []}),
            "cluster_dns: missing required field",
        ),
        (
            json!({"id": "c", "cluster_name": "c", "cluster_dns": "c.x", "environment": "dev",
                   "platform_components": [{"id": "a", "enabled": "yes"}]}),
            "platform_components[0].enabled: expected boolean, found string",
        ),
        (
            json!({"id": "c", "cluster_name": "c", "cluster_dns": "c.x", "environment": "staging", "platform_components": []}),
            "environment: \"staging\" is not one of",
        ),
        (
            json!({"id": "c", "cluster_name": "c", "cluster_dns": "c.x", "environment": "dev", "platform_components": [], "nodes": 3}),
            "nodes: unknown field",
        ),
        (
            json!({"id": false, "cluster_name": "c", "cluster_dns": "c.x", "environment": "dev", "platform_components": []}),
            "id: expected string, found boolean",
        ),
        (
            json!({"id": "c", "cluster_name": "c", "cluster_dns": "c.x", "environment": "dev", "platform_components": [],
                   "patches": {"a": []}}),
            "patches.a: expected object, found array",
        ),
    ];
    for (body, expected) in cases {
        let message = app
            .post("/clusters", &body)
            .await
            .expect_error(StatusCode::BAD_REQUEST, "bad_request");
        assert!(
            message.starts_with(expected),
            "expected '{expected}', got '{message}'"
        );
    }
    assert_eq!(app.get("/clusters/c").await.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn wrong_content_type_is_415_with_the_json_body() {
    let app = TestApp::new();
    let answer = app
        .raw(
            Method::POST,
            "/namespaces",
            &[AUTH, ("Content-Type", "text/plain")],
            b"{\"id\":\"x\"}".to_vec(),
        )
        .await;
    answer.expect_error(StatusCode::UNSUPPORTED_MEDIA_TYPE, "bad_request");
}

#[tokio::test]
async fn unknown_route_and_wrong_method_answer_json() {
    let app = TestApp::new();
    app.get("/no/such/route")
        .await
        .expect_error(StatusCode::NOT_FOUND, "not_found");
    let answer = app
        .call(
            Method::PATCH,
            "/clusters/edge-qa-01",
            Some(WRITE),
            Some(&json!({})),
        )
        .await;
    answer.expect_error(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed");
}

#[tokio::test]
async fn bodies_over_one_mib_are_413_on_writes_and_reads_need_no_length() {
    let app = TestApp::new();
    let big = json!({"id": "big", "labels": {}, "annotations": {"note": "x".repeat(1024 * 1024)}});
    let answer = app.post("/namespaces", &big).await;
    answer.expect_error(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");
    assert_eq!(
        app.get("/namespaces/big").await.status,
        StatusCode::NOT_FOUND
    );
    // A GET without Content-Length (as Flux sends it) is unaffected.
    assert_eq!(
        app.get("/api/v2/flux/clusters").await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn odd_path_ids_never_produce_a_server_error() {
    let app = TestApp::new();
    let long = "a".repeat(5000);
    for id in [
        "%00",
        "..%2F..%2Fetc",
        "%F0%9F%92%A9",
        "a'b\"c",
        long.as_str(),
    ] {
        for path in [
            format!("/clusters/{id}"),
            format!("/api/v2/flux/clusters/{id}/namespaces"),
        ] {
            let answer = app.get(&path).await;
            assert!(answer.status.is_client_error(), "{path}: {}", answer.status);
            assert!(answer.json["error"].is_string(), "{path}: JSON error body");
        }
    }
}

#[tokio::test]
async fn bad_query_parameters_are_400() {
    let app = TestApp::new();
    app.get("/clusters?limit=lots")
        .await
        .expect_error(StatusCode::BAD_REQUEST, "bad_request");
    app.get("/clusters?offset=-1")
        .await
        .expect_error(StatusCode::BAD_REQUEST, "bad_request");
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
