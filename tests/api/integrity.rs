//! The integrity rules (README, "Integrity") beyond single documents: dependency closure, Flux's limits, dry runs.

use poem::http::StatusCode;
use serde_json::{Value, json};

use flux_inputs::config::SeedSource;

use crate::helpers::{FLUX_MAX_BODY, TestApp};

fn reference(id: &str) -> Value {
    json!({"id": id, "enabled": true, "oci_tag": null, "component_path": null})
}

fn cluster(id: &str, components: &[&str]) -> Value {
    json!({"id": id, "cluster_name": id, "cluster_dns": format!("{id}.k8s.example.com"), "environment": "qa",
           "platform_components": components.iter().map(|c| reference(c)).collect::<Vec<_>>()})
}

#[tokio::test]
async fn a_missing_dependency_is_accepted_with_a_warning_naming_cluster_and_components() {
    let app = TestApp::new();
    let answer = app
        .post("/clusters", &cluster("lab-qa-07", &["podinfo"]))
        .await;
    assert_eq!(answer.status, StatusCode::CREATED);
    let warning = answer.header("warning").expect("a Warning header");
    assert!(warning.starts_with("299 flux-inputs \""), "{warning}");
    for name in [
        "lab-qa-07",
        "'cert-manager'",
        "'external-secrets'",
        "'traefik'",
    ] {
        assert!(warning.contains(name), "{name} in {warning}");
    }
    // A complete closure carries no warning.
    let complete = cluster("lab-qa-08", &["cert-manager", "traefik"]);
    assert_eq!(
        app.post("/clusters", &complete).await.header("warning"),
        None
    );
    // Disabling a dependency breaks the closure again.
    let mut disabled = reference("cert-manager");
    disabled["enabled"] = json!(false);
    let update = json!({"platform_components": [disabled, reference("traefik")]});
    let answer = app.put("/clusters/lab-qa-08", &update).await;
    assert!(
        answer
            .header("warning")
            .is_some_and(|w| w.contains("'cert-manager'"))
    );
}

#[tokio::test]
async fn strict_dependencies_refuses_the_write_and_changes_nothing() {
    let app = TestApp::configured(|config| config.strict_dependencies = true);
    let before = app.all_feeds().await;
    let answer = app
        .post("/clusters", &cluster("lab-qa-07", &["traefik"]))
        .await;
    let message = answer.expect_error(StatusCode::UNPROCESSABLE_ENTITY, "validation_error");
    assert!(message.contains("'cert-manager'"), "{message}");
    assert_eq!(
        app.get("/clusters/lab-qa-07").await.status,
        StatusCode::NOT_FOUND
    );
    // A catalog edit that breaks the closure on existing clusters is refused too.
    let answer = app
        .put(
            "/platform_components/cert-manager",
            &json!({"depends_on": ["loki"]}),
        )
        .await;
    let message = answer.expect_error(StatusCode::UNPROCESSABLE_ENTITY, "validation_error");
    assert!(message.contains("'loki'"), "{message}");
    assert_eq!(app.all_feeds().await, before);
}

#[tokio::test]
async fn more_than_100_inputs_is_allowed_with_a_warning() {
    let app = TestApp::new();
    let mut refs = Vec::new();
    for index in 0..101 {
        let id = format!("team-{index:03}");
        assert_eq!(
            app.post("/namespaces", &json!({"id": id})).await.status,
            StatusCode::CREATED
        );
        refs.push(json!({"id": id}));
    }
    let answer = app
        .put("/clusters/edge-qa-01", &json!({"namespaces": refs}))
        .await;
    assert_eq!(answer.status, StatusCode::OK);
    let warning = answer.header("warning").expect("a Warning header");
    assert!(
        warning.contains("101 inputs") && warning.contains("filter.limit"),
        "{warning}"
    );
    let feed = app
        .get("/api/v2/flux/clusters/edge-qa-01.k8s.example.com/namespaces")
        .await;
    assert_eq!(feed.json["inputs"].as_array().unwrap().len(), 101);
}

#[tokio::test]
async fn a_write_that_would_push_a_feed_over_900_kib_is_refused() {
    let app = TestApp::new();
    let before = app.all_feeds().await;
    let mut body = cluster("lab-qa-09", &["cert-manager"]);
    body["patches"] = json!({"cert-manager": {"blob": "x".repeat(FLUX_MAX_BODY)}});
    let message = app
        .post("/clusters", &body)
        .await
        .expect_error(StatusCode::UNPROCESSABLE_ENTITY, "validation_error");
    assert!(
        message.contains("lab-qa-09") && message.contains("/platform-components"),
        "{message}"
    );
    assert!(message.contains("921600"), "{message}");
    assert_eq!(app.all_feeds().await, before);

    // A definition shared by clusters: each half fits, together they do not.
    let half = "y".repeat(FLUX_MAX_BODY / 2);
    app.put("/namespaces/apps", &json!({"annotations": {"note": half}}))
        .await;
    let before = app.all_feeds().await;
    let answer = app
        .put(
            "/namespaces/monitoring",
            &json!({"annotations": {"note": half}}),
        )
        .await;
    let message = answer.expect_error(StatusCode::UNPROCESSABLE_ENTITY, "validation_error");
    assert!(
        message.contains("edge-qa-01") && message.contains("/namespaces"),
        "{message}"
    );
    assert_eq!(app.all_feeds().await, before);
}

#[tokio::test]
async fn an_oversized_cluster_list_is_422_and_shards_fit() {
    let dir = tempfile::tempdir().unwrap();
    let clusters: Vec<Value> = (0..9000)
        .map(|i| cluster(&format!("fleet-{i:05}"), &[]))
        .collect();
    let seed = dir.path().join("fleet.json");
    std::fs::write(&seed, json!({"clusters": clusters}).to_string()).unwrap();
    let app = TestApp::with(
        flux_inputs::config::ApiMode::ReadOnly,
        SeedSource::File(seed),
    );
    let answer = app.get("/api/v2/flux/clusters").await;
    let message = answer.expect_error(StatusCode::UNPROCESSABLE_ENTITY, "response_too_large");
    assert!(
        message.contains("limit") && message.contains("offset"),
        "{message}"
    );
    for shard in [
        "?limit=4000",
        "?limit=4000&offset=4000",
        "?environment=qa&limit=5000",
    ] {
        let answer = app.get(&format!("/api/v2/flux/clusters{shard}")).await;
        assert_eq!(answer.status, StatusCode::OK, "{shard}");
        assert!(answer.bytes.len() <= FLUX_MAX_BODY);
    }
}

#[tokio::test]
async fn dry_run_previews_without_storing() {
    let app = TestApp::new();
    let before = app.all_feeds().await;

    let mut body = cluster("lab-qa-10", &["cert-manager"]);
    body["namespaces"] = json!([{"id": "apps"}]);
    let answer = app.post("/clusters?dry_run=true", &body).await;
    assert_eq!(answer.status, StatusCode::ACCEPTED, "{}", answer.json);
    assert_eq!(answer.json["dry_run"], true);
    assert_eq!(answer.json["status"], 201);
    assert_eq!(answer.json["result"]["id"], "lab-qa-10");
    let changes = answer.json["changes"].as_array().unwrap();
    assert!(changes.contains(
        &json!({"cluster_dns": "lab-qa-10.k8s.example.com", "feed": "platform-components",
                                     "added": ["cert-manager"], "removed": [], "changed": [], "disabled": []})
    ));
    assert_eq!(
        app.get("/clusters/lab-qa-10").await.status,
        StatusCode::NOT_FOUND,
        "nothing stored"
    );

    // A catalog edit previews a change on every cluster that uses the component.
    let answer = app
        .put(
            "/platform_components/traefik?dry_run=true",
            &json!({"oci_tag": "34.0.0"}),
        )
        .await;
    assert_eq!(answer.status, StatusCode::ACCEPTED);
    let mut touched: Vec<_> = answer.json["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            assert_eq!(c["changed"], json!(["traefik"]));
            c["cluster_dns"].as_str().unwrap().to_owned()
        })
        .collect();
    touched.sort();
    let expected = [
        "edge-prod-01.k8s.example.com",
        "edge-prod-02.k8s.example.com",
        "edge-qa-01.k8s.example.com",
    ];
    assert_eq!(
        touched, expected,
        "lab-dev-01 pins its own traefik tag, so its feed does not change"
    );

    // A delete previews removals; a refused write answers its error, dry or not.
    let answer = app.delete("/clusters/edge-prod-02?dry_run=true").await;
    assert_eq!(answer.status, StatusCode::ACCEPTED);
    let removed: Vec<_> = answer.json["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["removed"].clone())
        .collect();
    assert!(removed.contains(&json!(["cert-manager", "traefik", "kube-prometheus-stack"])));
    let refused = app
        .delete("/platform_components/cert-manager?dry_run=true")
        .await;
    refused.expect_error(StatusCode::CONFLICT, "conflict");

    assert_eq!(app.all_feeds().await, before, "no dry run changed anything");
}

/// Text that displays in another order than it is stored, invisible characters and chart
/// tags that are no tags are refused on every write, naming the field.
#[tokio::test]
async fn unprintable_names_and_malformed_tags_are_refused() {
    let app = TestApp::new();
    let mut cluster = app.get("/clusters/edge-qa-01").await.json;
    cluster["cluster_name"] = json!("Store \u{202e}24 (Berlin)");
    let answer = app.put("/clusters/edge-qa-01", &cluster).await;
    let message = answer.expect_error(StatusCode::UNPROCESSABLE_ENTITY, "validation_error");
    assert!(
        message.contains("cluster_name") && message.contains("U+202E"),
        "{message}"
    );
    cluster["cluster_name"] = json!("Edge\u{200b}Store");
    app.put("/clusters/edge-qa-01", &cluster)
        .await
        .expect_error(StatusCode::UNPROCESSABLE_ENTITY, "validation_error");
    let mut component = app.get("/platform_components/traefik").await.json;
    component["oci_tag"] = json!("a".repeat(10_000));
    let message = app
        .put("/platform_components/traefik", &component)
        .await
        .expect_error(StatusCode::UNPROCESSABLE_ENTITY, "validation_error");
    assert!(message.contains("oci_tag") && message.contains("chart tag"));
}
