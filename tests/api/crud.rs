//! CRUD lifecycles and the integrity rules every write obeys. Every refused write is checked
//! to have changed nothing Flux can see.

use poem::http::StatusCode;
use serde_json::{Value, json};

use crate::helpers::TestApp;

fn component(id: &str, depends_on: &[&str]) -> Value {
    json!({"id": id, "component_path": id, "component_version": "1.0.0",
           "oci_url": format!("oci://registry.example.com/{id}"), "oci_tag": "1.0.0", "depends_on": depends_on})
}

fn cluster(id: &str, components: &[&str]) -> Value {
    json!({
        "id": id, "cluster_name": id, "cluster_dns": format!("{id}.k8s.example.com"), "environment": "uat",
        "platform_components": components.iter()
            .map(|c| json!({"id": c, "enabled": true, "oci_tag": null, "component_path": null}))
            .collect::<Vec<_>>(),
    })
}

/// Runs a write that must be refused and checks nothing visible changed.
async fn refused(
    app: &TestApp,
    write: impl std::future::Future<Output = crate::helpers::Answer>,
    status: StatusCode,
    code: &str,
) -> String {
    let before = app.all_feeds().await;
    let lists_before = lists(app).await;
    let message = write.await.expect_error(status, code);
    assert_eq!(app.all_feeds().await, before, "no feed changed");
    assert_eq!(lists(app).await, lists_before, "no resource changed");
    message
}

async fn lists(app: &TestApp) -> Vec<Value> {
    let mut all = Vec::new();
    for path in [
        "/clusters",
        "/platform_components",
        "/namespaces",
        "/rolebindings",
    ] {
        all.push(app.get(path).await.json);
    }
    all
}

#[tokio::test]
async fn cluster_lifecycle() {
    let app = TestApp::new();
    let mut body = cluster("lab-uat-01", &["cert-manager", "traefik"]);
    body["namespaces"] = json!([{"id": "ingress"}]);
    body["patches"] = json!({"traefik": {"replicas": 2}});
    let created = app.post("/clusters", &body).await;
    assert_eq!(created.status, StatusCode::CREATED);
    assert_eq!(created.header("location"), Some("/clusters/lab-uat-01"));
    assert_eq!(created.json["rolebindings"], json!([]), "defaults to empty");
    assert_eq!(
        created.json["platform_components"][1],
        json!({"id": "traefik", "enabled": true, "oci_tag": null, "component_path": null})
    );
    assert!(
        created.json.get("node_count").is_none(),
        "absent optional stays absent"
    );

    let fetched = app.get("/clusters/lab-uat-01").await;
    assert_eq!(fetched.json, created.json);

    // PUT keeps omitted fields and replaces present ones.
    let updated = app
        .put(
            "/clusters/lab-uat-01",
            &json!({"environment": "prod", "node_count": 4}),
        )
        .await;
    assert_eq!(updated.status, StatusCode::OK);
    assert_eq!(updated.json["environment"], "prod");
    assert_eq!(updated.json["node_count"], 4);
    assert_eq!(updated.json["patches"], json!({"traefik": {"replicas": 2}}));
    assert_eq!(updated.json["namespaces"], json!([{"id": "ingress"}]));
    assert_eq!(
        app.get("/clusters/lab-uat-01").await.json,
        updated.json,
        "stored"
    );

    let deleted = app.delete("/clusters/lab-uat-01").await;
    assert_eq!(deleted.status, StatusCode::OK);
    assert_eq!(
        deleted.json, updated.json,
        "DELETE answers the deleted object"
    );
    app.get("/clusters/lab-uat-01")
        .await
        .expect_error(StatusCode::NOT_FOUND, "not_found");
    app.delete("/clusters/lab-uat-01")
        .await
        .expect_error(StatusCode::NOT_FOUND, "not_found");
}

#[tokio::test]
async fn component_namespace_and_rolebinding_lifecycles() {
    let app = TestApp::new();
    let cases = [
        (
            "/platform_components",
            component("kyverno", &["cert-manager"]),
            json!({"oci_tag": "3.3.0"}),
            "oci_tag",
        ),
        (
            "/namespaces",
            json!({"id": "security", "labels": {"team": "sec"}}),
            json!({"annotations": {"a": "b"}}),
            "annotations",
        ),
        (
            "/rolebindings",
            json!({"id": "auditors", "role": "view", "subjects": [{"kind": "User", "name": "audit@example.com"}]}),
            json!({"role": "admin"}),
            "role",
        ),
    ];
    for (collection, body, update, changed) in cases {
        let id = body["id"].as_str().unwrap();
        let item = format!("{collection}/{id}");
        let created = app.post(collection, &body).await;
        assert_eq!(
            created.status,
            StatusCode::CREATED,
            "{collection}: {}",
            created.json
        );
        assert_eq!(created.header("location"), Some(item.as_str()));
        assert_eq!(app.get(&item).await.json, created.json);

        let updated = app.put(&item, &update).await;
        assert_eq!(updated.status, StatusCode::OK, "{}", updated.json);
        assert_eq!(updated.json[changed], update[changed]);
        for (key, value) in created.json.as_object().unwrap() {
            if key != changed {
                assert_eq!(
                    &updated.json[key], value,
                    "{collection}: omitted {key} kept"
                );
            }
        }
        let deleted = app.delete(&item).await;
        assert_eq!(deleted.json, updated.json);
        app.get(&item)
            .await
            .expect_error(StatusCode::NOT_FOUND, "not_found");
    }
    let created = app
        .post("/platform_components", &component("plain", &[]))
        .await;
    assert_eq!(created.json["cluster_env_enabled"], false, "defaults");
    assert_eq!(created.json["depends_on"], json!([]));
}

#[tokio::test]
async fn lists_are_ordered_by_id_paged_and_filtered() {
    let app = TestApp::new();
    let ids = |v: &Value| -> Vec<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|c| c["id"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(
        ids(&app.get("/clusters").await.json),
        ["edge-prod-01", "edge-prod-02", "edge-qa-01", "lab-dev-01"]
    );
    assert_eq!(
        ids(&app.get("/clusters?limit=1&offset=2").await.json),
        ["edge-qa-01"]
    );
    assert_eq!(
        ids(&app.get("/clusters?environment=prod").await.json),
        ["edge-prod-01", "edge-prod-02"]
    );
    assert_eq!(
        ids(&app
            .get("/clusters?cluster_dns=edge-qa-01.k8s.example.com")
            .await
            .json),
        ["edge-qa-01"]
    );
    assert_eq!(
        ids(&app.get("/clusters?cluster_dns=none.example.com").await.json),
        Vec::<String>::new()
    );
    let components = ids(&app.get("/platform_components").await.json);
    let mut sorted = components.clone();
    sorted.sort();
    assert_eq!(components, sorted);
    assert_eq!(
        ids(&app
            .get("/platform_components?component_version=latest")
            .await
            .json),
        ["podinfo"]
    );
    assert_eq!(
        ids(&app.get("/platform_components?limit=2").await.json).len(),
        2
    );
    assert_eq!(
        ids(&app.get("/namespaces?offset=3").await.json),
        ["monitoring"]
    );
    assert_eq!(
        ids(&app.get("/rolebindings?limit=1").await.json),
        ["ci-deployer"]
    );
}

#[tokio::test]
async fn put_with_a_different_body_id_is_400() {
    let app = TestApp::new();
    let message = refused(
        &app,
        app.put("/clusters/edge-qa-01", &json!({"id": "other"})),
        StatusCode::BAD_REQUEST,
        "bad_request",
    )
    .await;
    assert!(
        message.contains("other") && message.contains("edge-qa-01"),
        "{message}"
    );
    app.put("/namespaces/nope", &json!({"labels": {}}))
        .await
        .expect_error(StatusCode::NOT_FOUND, "not_found");
}

#[tokio::test]
async fn duplicate_id_or_cluster_dns_is_409() {
    let app = TestApp::new();
    let message = refused(
        &app,
        app.post("/clusters", &cluster("edge-qa-01", &[])),
        StatusCode::CONFLICT,
        "conflict",
    )
    .await;
    assert!(message.contains("edge-qa-01"), "{message}");

    let mut same_dns = cluster("edge-qa-99", &[]);
    same_dns["cluster_dns"] = json!("edge-qa-01.k8s.example.com");
    let message = refused(
        &app,
        app.post("/clusters", &same_dns),
        StatusCode::CONFLICT,
        "conflict",
    )
    .await;
    assert!(
        message.contains("edge-qa-01.k8s.example.com") && message.contains("'edge-qa-01'"),
        "{message}"
    );

    let moved = json!({"cluster_dns": "edge-prod-02.k8s.example.com"});
    refused(
        &app,
        app.put("/clusters/edge-prod-01", &moved),
        StatusCode::CONFLICT,
        "conflict",
    )
    .await;

    for (path, body) in [
        ("/platform_components", component("loki", &[])),
        ("/namespaces", json!({"id": "apps"})),
        (
            "/rolebindings",
            json!({"id": "dev-readers", "role": "view", "subjects": []}),
        ),
    ] {
        refused(
            &app,
            app.post(path, &body),
            StatusCode::CONFLICT,
            "conflict",
        )
        .await;
    }
}

#[tokio::test]
async fn unknown_references_are_422_naming_every_id() {
    let app = TestApp::new();
    let mut body = cluster("lab-uat-02", &["cert-manager", "ghost-a", "ghost-b"]);
    body["namespaces"] = json!([{"id": "apps"}, {"id": "no-such-ns"}]);
    body["rolebindings"] = json!([{"id": "no-such-rb"}]);
    let message = refused(
        &app,
        app.post("/clusters", &body),
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_error",
    )
    .await;
    for id in ["ghost-a", "ghost-b", "no-such-ns", "no-such-rb"] {
        assert!(message.contains(id), "{id} named in: {message}");
    }
    let update = json!({"platform_components": [{"id": "ghost-c", "enabled": true, "oci_tag": null, "component_path": null}], "patches": {}});
    let message = refused(
        &app,
        app.put("/clusters/edge-qa-01", &update),
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_error",
    )
    .await;
    assert!(message.contains("ghost-c"), "{message}");
}

#[tokio::test]
async fn patch_for_an_unreferenced_component_is_422() {
    let app = TestApp::new();
    let mut body = cluster("lab-uat-03", &["cert-manager"]);
    body["patches"] = json!({"traefik": {"x": 1}});
    let message = refused(
        &app,
        app.post("/clusters", &body),
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_error",
    )
    .await;
    assert!(message.contains("traefik"), "{message}");
    // Dropping a component that still has a patch is refused the same way.
    let update = json!({"platform_components": [{"id": "cert-manager", "enabled": true, "oci_tag": null, "component_path": null}]});
    let message = refused(
        &app,
        app.put("/clusters/edge-prod-01", &update),
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_error",
    )
    .await;
    assert!(message.contains("traefik"), "{message}");
}

#[tokio::test]
async fn depends_on_unknown_self_or_cycle_is_422() {
    let app = TestApp::new();
    let message = refused(
        &app,
        app.post("/platform_components", &component("x", &["nope"])),
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_error",
    )
    .await;
    assert!(message.contains("nope"), "{message}");
    let message = refused(
        &app,
        app.post("/platform_components", &component("x", &["x"])),
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_error",
    )
    .await;
    assert!(message.contains("itself"), "{message}");
    // cert-manager <- traefik <- podinfo; making cert-manager depend on podinfo closes a cycle.
    let message = refused(
        &app,
        app.put(
            "/platform_components/cert-manager",
            &json!({"depends_on": ["podinfo"]}),
        ),
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_error",
    )
    .await;
    assert!(
        message.contains("cert-manager -> podinfo -> traefik -> cert-manager"),
        "{message}"
    );
}

#[tokio::test]
async fn deleting_something_referenced_is_409_naming_the_referrers() {
    let app = TestApp::new();
    let message = refused(
        &app,
        app.delete("/platform_components/traefik"),
        StatusCode::CONFLICT,
        "conflict",
    )
    .await;
    assert!(
        message.contains("'lab-dev-01'") && message.contains("'podinfo'"),
        "{message}"
    );
    let message = refused(
        &app,
        app.delete("/namespaces/monitoring"),
        StatusCode::CONFLICT,
        "conflict",
    )
    .await;
    assert!(
        message.contains("'edge-prod-01'") && message.contains("'edge-qa-01'"),
        "{message}"
    );
    let message = refused(
        &app,
        app.delete("/rolebindings/ci-deployer"),
        StatusCode::CONFLICT,
        "conflict",
    )
    .await;
    assert!(message.contains("'lab-dev-01'"), "{message}");
}

#[tokio::test]
async fn name_rules_are_enforced() {
    let app = TestApp::new();
    let message = refused(
        &app,
        app.post("/platform_components", &component("Bad_Name", &[])),
        StatusCode::BAD_REQUEST,
        "bad_request",
    )
    .await;
    assert!(message.starts_with("id:"), "{message}");
    let mut body = cluster("lab-uat-04", &[]);
    body["cluster_dns"] = json!("not..a.name");
    let message = refused(
        &app,
        app.post("/clusters", &body),
        StatusCode::BAD_REQUEST,
        "bad_request",
    )
    .await;
    assert!(message.starts_with("cluster_dns:"), "{message}");
    let labels = json!({"id": "ns-x", "labels": {"bad key!": "v"}});
    let message = refused(
        &app,
        app.post("/namespaces", &labels),
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_error",
    )
    .await;
    assert!(message.contains("bad key!"), "{message}");
}

#[tokio::test]
async fn deleting_a_cluster_then_unused_definitions_succeeds() {
    let app = TestApp::new();
    for id in ["edge-prod-01", "edge-prod-02", "edge-qa-01"] {
        assert_eq!(
            app.delete(&format!("/clusters/{id}")).await.status,
            StatusCode::OK
        );
    }
    assert_eq!(
        app.delete("/namespaces/monitoring").await.status,
        StatusCode::OK,
        "no cluster uses it now"
    );
    assert_eq!(
        app.delete("/platform_components/loki").await.status,
        StatusCode::OK
    );
    app.delete("/platform_components/kube-prometheus-stack")
        .await;
    assert_eq!(
        app.get("/platform_components/kube-prometheus-stack")
            .await
            .status,
        StatusCode::NOT_FOUND
    );
}

/// Cluster labels (README, "Progressive rollouts"): Kubernetes label syntax, the list filter, the audit and
/// export carry them, and no feed changes because of them.
#[tokio::test]
async fn cluster_labels_filter_the_list_and_leave_the_feeds_alone() {
    let app = TestApp::new();
    let feeds = app.all_feeds().await;
    for (id, labels) in [
        (
            "edge-prod-01",
            json!({"canary": "true", "region": "eu-west"}),
        ),
        ("edge-prod-02", json!({"region": "eu-west"})),
        ("lab-dev-01", json!({"example.com/team": "platform"})),
    ] {
        let answer = app
            .put(&format!("/clusters/{id}"), &json!({"labels": labels}))
            .await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.json);
        assert_eq!(answer.json["labels"], labels);
    }
    assert_eq!(
        app.all_feeds().await,
        feeds,
        "labels are not part of any feed"
    );

    let ids = |answer: &crate::helpers::Answer| -> Vec<String> {
        answer
            .json
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["id"].as_str().unwrap().to_owned())
            .collect()
    };
    let west = app.get("/clusters?label=region=eu-west").await;
    assert_eq!(ids(&west), ["edge-prod-01", "edge-prod-02"]);
    let canary = app
        .get("/clusters?label=region=eu-west&label=canary=true")
        .await;
    assert_eq!(ids(&canary), ["edge-prod-01"], "every label must match");
    let team = app.get("/clusters?label=example.com/team=platform").await;
    assert_eq!(ids(&team), ["lab-dev-01"]);
    assert!(ids(&app.get("/clusters?label=region=us-east").await).is_empty());
    app.get("/clusters?label=region")
        .await
        .expect_error(StatusCode::BAD_REQUEST, "bad_request");

    for bad in [
        json!({"Not Valid": "x"}),
        json!({"canary": "no spaces allowed"}),
        json!({"canary": "x".repeat(64)}),
    ] {
        let message = app
            .put("/clusters/edge-qa-01", &json!({"labels": bad}))
            .await
            .expect_error(StatusCode::UNPROCESSABLE_ENTITY, "validation_error");
        assert!(message.contains("labels"), "{message}");
    }

    // The audit trail and the export carry them.
    let audit = app
        .call(
            poem::http::Method::GET,
            "/audit?kind=clusters&id=edge-prod-01",
            Some(crate::helpers::WRITE),
            None,
        )
        .await
        .json;
    assert_eq!(
        audit.as_array().unwrap().last().unwrap()["after"]["labels"]["canary"],
        "true"
    );
    let export = app
        .store
        .read(flux_inputs::store::seed::export)
        .await
        .unwrap();
    let exported = export["clusters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == "edge-prod-02")
        .unwrap()
        .clone();
    assert_eq!(exported["labels"], json!({"region": "eu-west"}));
}
