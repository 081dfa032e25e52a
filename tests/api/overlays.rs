//! Overlays (README, "Overlays"): one decision written once for every cluster a selector
//! matches, layered between the catalog and the cluster's own entry, with every rule of the
//! other collections.

use poem::http::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{TestApp, WRITE};

const PROD_01: &str = "/api/v2/flux/clusters/edge-prod-01.k8s.example.com";
const PROD_02: &str = "/api/v2/flux/clusters/edge-prod-02.k8s.example.com";
const QA_01: &str = "/api/v2/flux/clusters/edge-qa-01.k8s.example.com";

fn prod_pins() -> Value {
    json!({
        "id": "prod-pins", "description": "prod stays on the LTS line",
        "selector": {"environment": "prod"},
        "priority": 10,
        "platform_components": [{"id": "traefik", "oci_tag": "32.1.0"},
                                {"id": "cert-manager", "oci_tag": "v1.14.0"},
                                {"id": "podinfo", "oci_tag": "6.0.0"}],
        "patches": {"traefik": {"deployment.replicas": 3, "resources.limits.memory": "256Mi"}},
        "namespaces": ["apps"]
    })
}

/// The feed's input with this id.
async fn input(app: &TestApp, feed: &str, id: &str) -> Option<Value> {
    let answer = app.get(feed).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.json);
    answer.json["inputs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["id"] == id)
        .cloned()
}

async fn input_ids(app: &TestApp, feed: &str) -> Vec<String> {
    app.get(feed).await.json["inputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn an_overlay_is_a_collection_like_the_others() {
    let app = TestApp::new();
    let created = app.post("/overlays", &prod_pins()).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.json);
    assert_eq!(created.header("location"), Some("/overlays/prod-pins"));
    let etag = created.header("etag").unwrap().to_owned();
    assert_eq!(created.json["rolebindings"], json!([]), "defaults to empty");

    app.post("/overlays", &prod_pins())
        .await
        .expect_error(StatusCode::CONFLICT, "conflict");
    let mut second = prod_pins();
    second["id"] = json!("all");
    second["selector"] = json!({});
    app.post("/overlays", &second).await;
    let page = app.get("/overlays?limit=1&offset=1").await;
    assert_eq!(page.json.as_array().unwrap().len(), 1);
    assert_eq!(page.json[0]["id"], "prod-pins", "listed by id");

    // PUT keeps what it omits; If-Match guards against a lost update.
    let updated = app
        .call(
            Method::PUT,
            "/overlays/prod-pins",
            Some(WRITE),
            Some(&json!({"priority": 20})),
        )
        .await;
    assert_eq!(updated.status, StatusCode::OK, "{}", updated.json);
    assert_eq!(updated.json["priority"], 20);
    assert_eq!(
        updated.json["selector"],
        json!({"environment": "prod", "labels": {}})
    );
    assert_eq!(updated.json["namespaces"], json!(["apps"]));
    let stale = app
        .client
        .put("/overlays/prod-pins")
        .header("Authorization", format!("Bearer {WRITE}"))
        .header("If-Match", etag)
        .body_json(&json!({"priority": 30}))
        .send()
        .await;
    crate::helpers::answer(stale.0)
        .await
        .expect_error(StatusCode::PRECONDITION_FAILED, "precondition_failed");

    // Bad input is a clear error naming what is wrong, and changes nothing.
    let before = app.get("/overlays/prod-pins").await.json;
    for (body, status, code, words) in [
        (
            json!({"platform_components": [{"id": "kyverno", "enabled": true}]}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_error",
            "unknown platform component(s) 'kyverno'",
        ),
        (
            json!({"namespaces": ["nope"]}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_error",
            "unknown namespace(s) 'nope'",
        ),
        (
            json!({"selector": {"environment": "moon"}}),
            StatusCode::BAD_REQUEST,
            "bad_request",
            "environment",
        ),
        (
            json!({"platform_components": [{"id": "traefik", "oci_tag": "bad tag"}]}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_error",
            "platform_components[0].oci_tag",
        ),
    ] {
        let message = app
            .put("/overlays/prod-pins", &body)
            .await
            .expect_error(status, code);
        assert!(message.contains(words), "{message} names {words}");
    }
    assert_eq!(app.get("/overlays/prod-pins").await.json, before);

    // What an overlay names cannot be deleted from under it.
    app.post("/namespaces", &json!({"id": "edge-tools"})).await;
    app.put(
        "/overlays/prod-pins",
        &json!({"namespaces": ["apps", "edge-tools"]}),
    )
    .await;
    let message = app
        .delete("/namespaces/edge-tools")
        .await
        .expect_error(StatusCode::CONFLICT, "conflict");
    assert!(message.contains("overlay(s) 'prod-pins'"), "{message}");
    app.delete("/platform_components/podinfo")
        .await
        .expect_error(StatusCode::CONFLICT, "conflict");

    let deleted = app.delete("/overlays/prod-pins").await;
    assert_eq!(deleted.status, StatusCode::OK, "{}", deleted.json);
    app.get("/overlays/prod-pins")
        .await
        .expect_error(StatusCode::NOT_FOUND, "not_found");
    let metrics = String::from_utf8(app.get("/metrics").await.bytes).unwrap();
    assert!(
        metrics.contains("flux_inputs_inventory_items{kind=\"overlays\"} 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn feeds_layer_catalog_then_overlays_then_the_cluster() {
    let app = TestApp::new();
    // Warm the cache: the write must reach cached feeds too.
    let qa_before = app.get(&format!("{QA_01}/platform-components")).await.json;
    input(&app, &format!("{PROD_01}/platform-components"), "traefik").await;

    app.post("/overlays", &prod_pins()).await;
    let traefik = input(&app, &format!("{PROD_02}/platform-components"), "traefik")
        .await
        .unwrap();
    assert_eq!(traefik["source"]["oci_tag"], "32.1.0", "{traefik}");
    assert_eq!(
        input(&app, &format!("{PROD_01}/platform-components"), "traefik")
            .await
            .unwrap()["source"]["oci_tag"],
        "32.1.0"
    );
    // edge-prod-01 pins cert-manager itself: the cluster's own entry wins.
    let cert_manager = input(
        &app,
        &format!("{PROD_01}/platform-components"),
        "cert-manager",
    )
    .await
    .unwrap();
    assert_eq!(cert_manager["source"]["oci_tag"], "v1.15.4");
    let cert_manager = input(
        &app,
        &format!("{PROD_02}/platform-components"),
        "cert-manager",
    )
    .await
    .unwrap();
    assert_eq!(cert_manager["source"]["oci_tag"], "v1.14.0");
    // A value without `enabled` never adds the component where it was not.
    assert_eq!(
        input(&app, &format!("{PROD_02}/platform-components"), "podinfo").await,
        None
    );
    // Namespaces the overlay names come after the cluster's own.
    assert_eq!(
        input_ids(&app, &format!("{PROD_02}/namespaces")).await,
        ["cert-manager", "ingress", "monitoring", "apps"]
    );
    assert_eq!(
        app.get(&format!("{QA_01}/platform-components")).await.json,
        qa_before,
        "a cluster the selector does not match is served as before"
    );

    // A higher overlay assigns loki to every edge cluster; a patch key set below is removed.
    let edge = json!({
        "id": "edge-logging", "selector": {"labels": {"tier": "edge"}}, "priority": 20,
        "platform_components": [{"id": "loki", "enabled": true}, {"id": "traefik", "oci_tag": "32.2.0"}],
        "patches": {"traefik": {"resources.limits.memory": null, "logs.access.enabled": true}}
    });
    let preview = app.post("/overlays?dry_run=true", &edge).await;
    assert_eq!(preview.status, StatusCode::ACCEPTED, "{}", preview.json);
    assert_eq!(
        preview.json["clusters_changed"], 0,
        "no cluster has the label yet"
    );
    app.post("/overlays", &edge).await;

    // A label on the cluster is a write like any other: previewed, then layered.
    let labels = json!({"labels": {"tier": "edge"}});
    let preview = app
        .put("/clusters/edge-prod-02?dry_run=true", &labels)
        .await;
    assert_eq!(preview.json["clusters_changed"], 1, "{}", preview.json);
    assert_eq!(
        preview.json["summary"][0]["added"], 1,
        "loki: {}",
        preview.json
    );
    assert_eq!(preview.json["summary"][0]["changed"], 1, "traefik");
    let put = app.put("/clusters/edge-prod-02", &labels).await;
    assert_eq!(put.status, StatusCode::OK, "{}", put.json);
    assert_eq!(
        put.json["platform_components"].as_array().unwrap().len(),
        3,
        "GET shows the cluster's own"
    );

    let ids = input_ids(&app, &format!("{PROD_02}/platform-components")).await;
    assert_eq!(
        ids,
        ["cert-manager", "traefik", "kube-prometheus-stack", "loki"],
        "assigned components follow the cluster's own"
    );
    let traefik = input(&app, &format!("{PROD_02}/platform-components"), "traefik")
        .await
        .unwrap();
    assert_eq!(
        traefik["source"]["oci_tag"], "32.2.0",
        "the higher priority wins"
    );
    let patches = &traefik["patches"];
    assert_eq!(
        patches.get("resources.limits.memory"),
        None,
        "null removed the key: {traefik}"
    );
    assert_eq!(patches["logs.access.enabled"], true, "{traefik}");
    assert_eq!(
        patches["deployment.replicas"], 2,
        "the cluster's own patch wins"
    );
    assert_eq!(traefik["values"]["logs"]["access"]["enabled"], true);

    // Where each value comes from.
    let effective = app.get("/clusters/edge-prod-02/effective").await;
    assert_eq!(effective.status, StatusCode::OK, "{}", effective.json);
    assert_eq!(
        effective.json["overlays"],
        json!(["prod-pins", "edge-logging"])
    );
    let component = |id: &str| {
        effective.json["platform_components"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["id"] == id)
            .cloned()
            .unwrap()
    };
    assert_eq!(
        component("traefik")["oci_tag"],
        json!({"value": "32.2.0", "from": "overlay:edge-logging"})
    );
    assert_eq!(component("traefik")["enabled"]["from"], "cluster");
    assert_eq!(
        component("traefik")["patches"]["logs.access.enabled"]["from"],
        "overlay:edge-logging"
    );
    assert_eq!(
        component("traefik")["patches"]["deployment.replicas"],
        json!({"value": 2, "from": "cluster"})
    );
    assert_eq!(
        component("kube-prometheus-stack")["oci_tag"],
        json!({"value": "66.3.1", "from": "catalog"})
    );
    assert_eq!(component("loki")["enabled"]["from"], "overlay:edge-logging");
    assert_eq!(
        effective.json["namespaces"][3],
        json!({"id": "apps", "from": "overlay:prod-pins"})
    );
    app.get("/clusters/nope/effective")
        .await
        .expect_error(StatusCode::NOT_FOUND, "not_found");
}

#[tokio::test]
async fn a_catalog_edit_reaches_clusters_an_overlay_assigns_to() {
    let app = TestApp::new();
    app.post(
        "/overlays",
        &json!({"id": "prod-logs", "selector": {"environment": "prod"},
                "platform_components": [{"id": "loki", "enabled": true}]}),
    )
    .await;
    // edge-prod-02 runs loki only through the overlay.
    let preview = app
        .put(
            "/platform_components/loki?dry_run=true",
            &json!({"oci_tag": "6.23.0"}),
        )
        .await;
    let dns: Vec<&str> = preview.json["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["cluster_dns"].as_str().unwrap())
        .collect();
    assert!(
        dns.contains(&"edge-prod-02.k8s.example.com"),
        "{}",
        preview.json
    );
    app.put("/platform_components/loki", &json!({"oci_tag": "6.23.0"}))
        .await;
    let loki = input(&app, &format!("{PROD_02}/platform-components"), "loki")
        .await
        .unwrap();
    assert_eq!(loki["source"]["oci_tag"], "6.23.0");
}

#[tokio::test]
async fn taking_back_what_an_overlay_assigned_is_guarded_like_any_shrink() {
    let app = TestApp::configured(|config| config.max_clusters_shrunk = 1);
    let everyone = json!({"id": "everyone", "selector": {},
        "platform_components": [{"id": "podinfo", "enabled": true}], "rolebindings": ["dev-readers"]});
    let created = app.post("/overlays", &everyone).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.json);

    // A tag edit takes nothing away: no confirmation, however many clusters.
    let put = app
        .put("/overlays/everyone", &json!({"platform_components": [{"id": "podinfo", "enabled": true, "oci_tag": "6.7.0"}]}))
        .await;
    assert_eq!(put.status, StatusCode::OK, "{}", put.json);

    // Deleting it takes podinfo from the two prod clusters and dev-readers from the three
    // clusters that do not list it themselves.
    let feeds = app.all_feeds().await;
    let message = app
        .delete("/overlays/everyone")
        .await
        .expect_error(StatusCode::CONFLICT, "blast_radius");
    assert!(message.contains("?confirm=3"), "{message}");
    assert_eq!(app.all_feeds().await, feeds, "a refusal changes nothing");
    let preview = app.delete("/overlays/everyone?dry_run=true").await;
    assert_eq!(
        preview.json["blast_radius"]["clusters_shrunk"], 3,
        "{}",
        preview.json
    );
    let deleted = app.delete("/overlays/everyone?confirm=3").await;
    assert_eq!(deleted.status, StatusCode::OK, "{}", deleted.json);
    assert_eq!(
        input(&app, &format!("{PROD_02}/platform-components"), "podinfo").await,
        None
    );

    // A label change that leaves an overlay's selector shrinks too.
    app.post(
        "/overlays",
        &json!({"id": "edge", "selector": {"labels": {"tier": "edge"}},
                "platform_components": [{"id": "podinfo", "enabled": true}]}),
    )
    .await;
    for id in ["edge-prod-01", "edge-prod-02"] {
        let put = app
            .put(
                &format!("/clusters/{id}"),
                &json!({"labels": {"tier": "edge"}}),
            )
            .await;
        assert_eq!(put.status, StatusCode::OK, "{}", put.json);
    }
    let preview = app
        .put(
            "/clusters/edge-prod-01?dry_run=true",
            &json!({"labels": {}}),
        )
        .await;
    assert_eq!(
        preview.json["blast_radius"]["clusters_shrunk"], 1,
        "{}",
        preview.json
    );
    assert_eq!(preview.json["summary"][0]["removed"], 1, "{}", preview.json);
}

#[tokio::test]
async fn overlay_writes_are_audited_and_revert() {
    let app = TestApp::new();
    let before = app.all_feeds().await;
    app.post("/overlays", &prod_pins()).await;
    app.put("/overlays/prod-pins", &json!({"description": "edited"}))
        .await;
    let audit = app
        .call(
            Method::GET,
            "/audit?kind=overlays&id=prod-pins",
            Some(WRITE),
            None,
        )
        .await
        .json;
    let entries = audit.as_array().unwrap();
    assert_eq!(entries.len(), 2, "{audit}");
    let (create, edit) = (&entries[0], &entries[1]);
    assert_eq!(
        edit["before"]["description"], "prod stays on the LTS line",
        "{edit}"
    );
    assert_eq!(create["before"], Value::Null, "{create}");
    let create_revision = create["revision"].as_i64().unwrap();
    let reverted = app
        .post(&format!("/audit/{create_revision}/revert"), &json!({}))
        .await;
    assert_eq!(reverted.status, StatusCode::OK, "{}", reverted.json);
    app.get("/overlays/prod-pins")
        .await
        .expect_error(StatusCode::NOT_FOUND, "not_found");
    assert_eq!(
        app.all_feeds().await,
        before,
        "the fleet is served as before"
    );
}

#[tokio::test]
async fn convergence_judges_the_effective_desired_version() {
    let app = TestApp::new();
    app.post("/overlays", &prod_pins()).await;
    app.post(
        "/overlays",
        &json!({"id": "prod-logs", "selector": {"environment": "prod"},
                "platform_components": [{"id": "loki", "enabled": true}]}),
    )
    .await;
    for (component, revision) in [("traefik", "32.1.0"), ("loki", "6.22.0")] {
        let event = json!({
            "involvedObject": {"kind": "HelmRelease", "namespace": "flux-system", "name": component},
            "severity": "info", "timestamp": "2026-12-06T12:00:00Z",
            "message": format!("Helm upgrade succeeded for release {component}"),
            "reason": "UpgradeSucceeded", "reportingController": "helm-controller",
            "metadata": {"revision": revision}
        });
        let answer = app
            .call(
                Method::POST,
                &format!("{PROD_02}/events"),
                Some(crate::helpers::READ),
                Some(&event),
            )
            .await;
        assert_eq!(answer.status, StatusCode::ACCEPTED, "{}", answer.json);
    }
    app.get(&format!("{PROD_02}/platform-components")).await; // it polls: not stale
    let status = app.get("/status/clusters/edge-prod-02").await;
    assert_eq!(status.status, StatusCode::OK, "{}", status.json);
    let entry = |id: &str| {
        status.json["components"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["component"] == id)
            .cloned()
            .unwrap_or_else(|| panic!("{id} in {}", status.json))
    };
    assert_eq!(entry("traefik")["desired_version"], "32.1.0");
    assert_eq!(
        entry("traefik")["state"],
        "converged",
        "{}",
        entry("traefik")
    );
    assert_eq!(
        entry("loki")["desired_version"],
        "6.22.0",
        "assigned by an overlay"
    );
    assert_eq!(entry("loki")["state"], "converged");
}
