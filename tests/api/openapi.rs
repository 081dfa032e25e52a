//! The served spec is the one derived from the code, is OpenAPI 3.0, and names every path.

use serde_yaml::Value;

use flux_inputs::api;
use flux_inputs::config::ApiMode;

use crate::helpers::TestApp;

const SNAPSHOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/snapshots/openapi.yaml");

fn parse(text: &str) -> Value {
    serde_yaml::from_str(text).expect("the spec is valid YAML")
}

#[tokio::test]
async fn served_spec_equals_the_generated_spec() {
    let app = TestApp::new();
    let answer = app
        .call(poem::http::Method::GET, "/openapi.yaml", None, None)
        .await;
    assert_eq!(answer.status, 200);
    assert!(
        answer
            .header("content-type")
            .unwrap()
            .starts_with("application/yaml")
    );
    assert_eq!(
        String::from_utf8(answer.bytes).unwrap(),
        api::spec_yaml(ApiMode::Crud)
    );
}

#[test]
fn spec_is_openapi_3_0_with_every_contract_path_and_the_bearer_scheme() {
    let spec = parse(&api::spec_yaml(ApiMode::Crud));
    assert_eq!(spec["openapi"].as_str(), Some("3.0.0"));
    let paths = spec["paths"].as_mapping().unwrap();
    let expected = [
        (
            "/api/v2/flux/clusters/{cluster_dns}/platform-components",
            vec!["get"],
        ),
        (
            "/api/v2/flux/clusters/{cluster_dns}/namespaces",
            vec!["get"],
        ),
        (
            "/api/v2/flux/clusters/{cluster_dns}/rolebindings",
            vec!["get"],
        ),
        ("/api/v2/flux/clusters", vec!["get"]),
        ("/clusters", vec!["get", "post"]),
        ("/clusters/{id}", vec!["get", "put", "delete"]),
        ("/platform_components", vec!["get", "post"]),
        ("/platform_components/{id}", vec!["get", "put", "delete"]),
        ("/namespaces", vec!["get", "post"]),
        ("/namespaces/{id}", vec!["get", "put", "delete"]),
        ("/rolebindings", vec!["get", "post"]),
        ("/rolebindings/{id}", vec!["get", "put", "delete"]),
        ("/overlays", vec!["get", "post"]),
        ("/overlays/{id}", vec!["get", "put", "delete"]),
        ("/clusters/{id}/effective", vec!["get"]),
        ("/windows", vec!["get", "post"]),
        ("/windows/{id}", vec!["get", "put", "delete"]),
        ("/clusters/{id}/windows", vec!["get"]),
        ("/health", vec!["get"]),
        ("/ready", vec!["get"]),
        ("/openapi.yaml", vec!["get"]),
        ("/metrics", vec!["get"]),
        ("/status/clusters", vec!["get"]),
        ("/api/v2/flux/clusters/{cluster_dns}/events", vec!["post"]),
        ("/status/clusters/{id}", vec!["get"]),
        ("/status/components/{id}", vec!["get"]),
        ("/status/fleet", vec!["get"]),
        ("/status/replica", vec!["get"]),
        ("/audit", vec!["get"]),
        ("/audit/{revision}/revert", vec!["post"]),
        ("/tokens", vec!["get", "post"]),
        ("/tokens/{name}", vec!["delete"]),
        ("/rollouts", vec!["get", "post"]),
        ("/rollouts/{id}", vec!["get"]),
        ("/rollouts/{id}/start", vec!["post"]),
        ("/rollouts/{id}/pause", vec!["post"]),
        ("/rollouts/{id}/resume", vec!["post"]),
        ("/rollouts/{id}/abort", vec!["post"]),
        ("/rollouts/{id}/rollback", vec!["post"]),
    ];
    assert_eq!(paths.len(), expected.len(), "no path more, no path less");
    for (path, methods) in expected {
        let item = &spec["paths"][path];
        assert!(item.is_mapping(), "{path} is in the spec");
        for method in methods {
            let operation = &item[method];
            assert!(operation.is_mapping(), "{method} {path}");
            let responses = operation["responses"].as_mapping().unwrap();
            let protected = !["/health", "/ready", "/openapi.yaml"].contains(&path);
            if protected {
                assert!(
                    operation["security"].is_sequence(),
                    "{method} {path} names its token"
                );
                assert!(
                    responses.contains_key("401"),
                    "{method} {path} documents 401"
                );
            }
            if path.ends_with("/events") {
                for status in ["202", "400", "403", "404", "413"] {
                    assert!(responses.contains_key(status), "{path} documents {status}");
                }
            } else if method == "post"
                && !path.starts_with("/audit")
                && path != "/tokens"
                && !path.starts_with("/rollouts/")
            {
                assert!(
                    responses.contains_key("201") && responses.contains_key("409"),
                    "{method} {path}"
                );
                let headers = operation["responses"]["201"]["headers"]
                    .as_mapping()
                    .unwrap();
                assert!(headers.keys().any(|k| {
                    k.as_str()
                        .is_some_and(|k| k.eq_ignore_ascii_case("location"))
                }));
            }
        }
    }
    let schemes = spec["components"]["securitySchemes"].as_mapping().unwrap();
    for name in ["ReadAccess", "WriteAccess", "ReportAccess", "StatusAccess"] {
        assert_eq!(schemes[name]["type"].as_str(), Some("http"));
        assert_eq!(schemes[name]["scheme"].as_str(), Some("bearer"));
    }
    let list_params = spec["paths"]["/clusters"]["get"]["parameters"]
        .as_sequence()
        .unwrap();
    let names: Vec<_> = list_params
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["cluster_dns", "environment", "label", "limit", "offset"]
    );
}

/// The committed snapshot makes spec changes visible in review.
/// Regenerate with `UPDATE_SNAPSHOTS=1 cargo nextest run openapi`.
#[test]
fn spec_matches_the_committed_snapshot() {
    let spec = api::spec_yaml(ApiMode::Crud);
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::write(SNAPSHOT, &spec).unwrap();
    }
    let committed = std::fs::read_to_string(SNAPSHOT).expect("tests/snapshots/openapi.yaml exists");
    assert!(
        committed == spec,
        "the spec changed: review it and regenerate the snapshot (UPDATE_SNAPSHOTS=1)"
    );
}
