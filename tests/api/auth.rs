//! Tokens and modes (contract §2–3).

use poem::http::{Method, StatusCode};
use serde_json::json;

use flux_inputs::config::{ApiMode, SeedSource};

use crate::helpers::{READ, TestApp, WRITE};

const FEED: &str = "/api/v2/flux/clusters/lab-dev-01.k8s.example.com/platform-components";

#[tokio::test]
async fn missing_or_wrong_token_is_401_with_www_authenticate() {
    let app = TestApp::new();
    for token in [None, Some("wrong"), Some(""), Some("read-token ")] {
        for path in [FEED, "/api/v2/flux/clusters", "/clusters"] {
            let answer = app.call(Method::GET, path, token, None).await;
            answer.expect_error(StatusCode::UNAUTHORIZED, "unauthorized");
            assert_eq!(
                answer.header("www-authenticate"),
                Some("Bearer"),
                "{path} {token:?}"
            );
        }
    }
    let basic = app
        .raw(
            Method::GET,
            FEED,
            &[("Authorization", "Basic cmVhZC10b2tlbg==")],
            Vec::new(),
        )
        .await;
    basic.expect_error(StatusCode::UNAUTHORIZED, "unauthorized");
}

#[tokio::test]
async fn the_scheme_is_case_insensitive() {
    let app = TestApp::new();
    let answer = app
        .raw(
            Method::GET,
            FEED,
            &[("Authorization", "bearer read-token")],
            Vec::new(),
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK);
}

#[tokio::test]
async fn read_token_cannot_write_write_token_can_read() {
    let app = TestApp::new();
    let body = json!({"id": "scratch"});
    let answer = app
        .call(Method::POST, "/namespaces", Some(READ), Some(&body))
        .await;
    answer.expect_error(StatusCode::UNAUTHORIZED, "unauthorized");
    let answer = app
        .call(Method::DELETE, "/namespaces/apps", Some(READ), None)
        .await;
    answer.expect_error(StatusCode::UNAUTHORIZED, "unauthorized");
    assert_eq!(
        app.get("/namespaces/apps").await.status,
        StatusCode::OK,
        "nothing was deleted"
    );
    for path in [FEED, "/clusters"] {
        assert_eq!(
            app.call(Method::GET, path, Some(WRITE), None).await.status,
            StatusCode::OK
        );
    }
    assert_eq!(
        app.call(Method::POST, "/namespaces", Some(WRITE), Some(&body))
            .await
            .status,
        StatusCode::CREATED
    );
}

#[tokio::test]
async fn service_endpoints_are_open_with_or_without_a_token() {
    let app = TestApp::new();
    for path in ["/health", "/ready", "/openapi.yaml"] {
        for token in [None, Some(READ), Some("wrong")] {
            let answer = app.call(Method::GET, path, token, None).await;
            assert_eq!(answer.status, StatusCode::OK, "{path} with {token:?}");
        }
    }
    assert_eq!(app.get("/health").await.json, json!({"status": "ok"}));
    assert_eq!(app.get("/ready").await.json, json!({"status": "ok"}));
}

#[tokio::test]
async fn read_only_mode_has_no_crud_paths() {
    let app = TestApp::with(ApiMode::ReadOnly, SeedSource::Demo);
    assert_eq!(app.get(FEED).await.status, StatusCode::OK);
    for path in [
        "/clusters",
        "/clusters/lab-dev-01",
        "/platform_components",
        "/namespaces",
        "/rolebindings/x",
    ] {
        app.get(path)
            .await
            .expect_error(StatusCode::NOT_FOUND, "not_found");
        let answer = app
            .call(Method::POST, path, Some(WRITE), Some(&json!({})))
            .await;
        assert!(
            matches!(answer.status.as_u16(), 404 | 405),
            "{path}: {}",
            answer.status
        );
        assert!(answer.json["error"].is_string());
    }
    let spec = app.get("/openapi.yaml").await;
    let text = String::from_utf8(spec.bytes).unwrap();
    assert!(
        !text.contains("/platform_components"),
        "the read-only spec lists no CRUD path"
    );
}
