//! The example ResourceSets rendered against the demo feeds by Go's text/template with sprig,
//! the way Flux Operator renders them (tests/render/render.go; `.ci/run` installs Go and the
//! two libraries from Debian): every template renders, and a HelmRelease receives the
//! cluster's patches as typed values.

use std::path::Path;
use std::process::Command;

use serde::Deserialize;
use serde_json::{Value, json};

use crate::helpers::TestApp;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// Renders `resourceset` (a file of examples/flux) for every input of `feed`.
fn render(dir: &Path, resourceset: &str, feed: &[u8]) -> Vec<Value> {
    let feed_file = dir.join(format!("{resourceset}.json"));
    std::fs::write(&feed_file, feed).unwrap();
    let output = Command::new("go")
        .args(["run", &format!("{ROOT}/tests/render/render.go")])
        .arg(format!("{ROOT}/examples/flux/{resourceset}"))
        .arg(&feed_file)
        .env("GOPATH", "/usr/share/gocode")
        .env("GO111MODULE", "off")
        .env("GOFLAGS", "")
        .env("GOCACHE", dir.join("go-cache"))
        .output()
        .expect("go is installed (.ci/run installs golang-go)");
    assert!(
        output.status.success(),
        "render {resourceset}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8(output.stdout).unwrap();
    serde_yaml::Deserializer::from_str(&text)
        .map(|doc| serde_json::to_value(serde_yaml::Value::deserialize(doc).unwrap()).unwrap())
        .filter(|doc| !doc.is_null())
        .collect()
}

fn object<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("{kind} {name} in {docs:?}"))
}

#[tokio::test]
async fn helm_releases_receive_patches_as_typed_values() {
    let app = TestApp::new();
    let dir = tempfile::tempdir().unwrap();
    let feed = app
        .get("/api/v2/flux/clusters/edge-prod-01.k8s.example.com/platform-components")
        .await;
    let docs = render(
        dir.path(),
        "resourceset-platform-components.yaml",
        &feed.bytes,
    );

    let prometheus = object(&docs, "HelmRelease", "kube-prometheus-stack");
    assert_eq!(
        prometheus["spec"]["values"],
        json!({"prometheus": {"prometheusSpec": {
            "retention": "15d",
            "resources": {"requests": {"cpu": "500m", "memory": "2Gi"}}
        }}}),
        "an object patch arrives as an object, not a list of string fragments"
    );
    let traefik = object(&docs, "HelmRelease", "traefik");
    assert_eq!(
        traefik["spec"]["values"],
        json!({"deployment": {"replicas": 3}, "ports": {"websecure": {"tls": {"enabled": true}}},
               "service": {"type": "LoadBalancer"}}),
        "numbers and booleans keep their types"
    );
    // No patches: an empty object, which Helm treats as no values.
    let cert_manager = object(&docs, "HelmRelease", "cert-manager");
    assert_eq!(cert_manager["spec"]["values"], json!({}));
    assert_eq!(
        cert_manager["metadata"]["annotations"]["event.toolkit.fluxcd.io/component"],
        "cert-manager"
    );
    assert_eq!(
        object(&docs, "OCIRepository", "cert-manager")["spec"]["ref"]["tag"],
        "v1.15.4",
        "the cluster's pinned tag"
    );
}

#[tokio::test]
async fn every_example_template_renders_against_the_demo_feeds() {
    let app = TestApp::new();
    let dir = tempfile::tempdir().unwrap();
    for dns in [
        "lab-dev-01.k8s.example.com",
        "edge-qa-01.k8s.example.com",
        "edge-prod-01.k8s.example.com",
        "edge-prod-02.k8s.example.com",
    ] {
        for (feed, resourceset) in [
            (
                "platform-components",
                "resourceset-platform-components.yaml",
            ),
            ("namespaces", "resourceset-namespaces.yaml"),
            ("rolebindings", "resourceset-rolebindings.yaml"),
        ] {
            let body = app
                .get(&format!("/api/v2/flux/clusters/{dns}/{feed}"))
                .await
                .bytes;
            let docs = render(dir.path(), resourceset, &body);
            assert!(!docs.is_empty(), "{resourceset} renders objects for {dns}");
            for doc in &docs {
                assert!(doc["kind"].is_string() && doc["metadata"]["name"].is_string());
            }
        }
    }
    let clusters = app.get("/api/v2/flux/clusters").await.bytes;
    let docs = render(dir.path(), "resourceset-clusters.yaml", &clusters);
    assert!(!docs.is_empty());
}
