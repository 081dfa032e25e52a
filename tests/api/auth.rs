//! Tokens and modes (README, "Configuration").

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

/// Wrong tokens from one address are limited: past the allowance, every request from it
/// that presents a credential is `429` with `Retry-After` (unchecked, so a right guess is
/// not told apart); other addresses and loopback are not affected.
#[tokio::test]
async fn wrong_tokens_from_one_address_are_rate_limited() {
    use poem::web::{LocalAddr, RemoteAddr};
    use poem::{Addr, Endpoint};
    let app = TestApp::new();
    let endpoint = flux_inputs::app::build_app(
        app.store.clone(),
        flux_inputs::auth::Tokens {
            read: flux_inputs::config::Secret::new(READ),
            write: flux_inputs::config::Secret::new(WRITE),
            events_require_cluster_identity: false,
        },
        ApiMode::Crud,
    );
    let from = |ip: &str, token: &str| {
        let parts = poem::http::Request::builder()
            .uri(FEED)
            .header("Authorization", format!("Bearer {token}"))
            .body(())
            .unwrap()
            .into_parts()
            .0;
        let remote = RemoteAddr(Addr::SocketAddr(format!("{ip}:40000").parse().unwrap()));
        let parts = poem::RequestParts::from((
            parts,
            LocalAddr::default(),
            remote,
            poem::http::uri::Scheme::HTTP,
        ));
        poem::Request::from_parts(parts, poem::Body::empty())
    };
    let allowed = flux_inputs::api::throttle::FAILURES_ALLOWED;
    for _ in 0..allowed {
        let answer = endpoint.get_response(from("192.0.2.7", "guess")).await;
        assert_eq!(answer.status(), StatusCode::UNAUTHORIZED);
    }
    let locked = endpoint.get_response(from("192.0.2.7", READ)).await;
    assert_eq!(
        locked.status(),
        StatusCode::TOO_MANY_REQUESTS,
        "even a right token, unchecked"
    );
    assert!(locked.headers().contains_key("retry-after"));
    let other = endpoint.get_response(from("192.0.2.8", READ)).await;
    assert_eq!(other.status(), StatusCode::OK, "another address");
    for _ in 0..allowed + 5 {
        endpoint.get_response(from("127.0.0.1", "guess")).await;
    }
    let local = endpoint.get_response(from("127.0.0.1", READ)).await;
    assert_eq!(
        local.status(),
        StatusCode::OK,
        "loopback (the sidecar's Flux) is exempt"
    );
}
