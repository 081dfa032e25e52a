//! The Flux feeds: shapes, order, the client's checks, 404 for unknown clusters, sharding.

use serde_json::json;

use crate::helpers::{TestApp, assert_flux_accepts};

const PROD: &str = "edge-prod-01.k8s.example.com";

#[tokio::test]
async fn every_feed_of_the_demo_seed_passes_flux_client_checks() {
    let app = TestApp::new();
    let feeds = app.all_feeds().await;
    assert_eq!(
        feeds.len(),
        4 * 3 + 1,
        "four demo clusters, three feeds each, plus the list"
    );
    for (path, _, bytes) in feeds {
        let answer = app.get(&path).await;
        assert_eq!(
            answer.bytes, bytes,
            "{path} is stable across identical reads"
        );
        assert_flux_accepts(&answer);
        assert!(
            !answer.json["inputs"].as_array().unwrap().is_empty(),
            "{path} has inputs"
        );
    }
}

#[tokio::test]
async fn platform_components_merge_catalog_overrides_and_patches() {
    let app = TestApp::new();
    let answer = app
        .get(&format!("/api/v2/flux/clusters/{PROD}/platform-components"))
        .await;
    assert_flux_accepts(&answer);
    let inputs = answer.json["inputs"].as_array().unwrap();
    let ids: Vec<_> = inputs.iter().map(|i| i["id"].as_str().unwrap()).collect();
    assert_eq!(
        ids,
        ["cert-manager", "traefik", "kube-prometheus-stack", "loki"],
        "the cluster's order"
    );
    let keys: Vec<_> = inputs[0]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        [
            "id",
            "component_path",
            "component_version",
            "cluster_env_enabled",
            "depends_on",
            "enabled",
            "patches",
            "values",
            "cluster",
            "source"
        ]
    );
    // cert-manager: tag overridden on this cluster, no patches.
    assert_eq!(
        inputs[0]["source"],
        json!({"oci_url": "oci://quay.io/jetstack/charts", "oci_tag": "v1.15.4"})
    );
    assert_eq!(inputs[0]["patches"], json!({}));
    assert_eq!(inputs[0]["values"], json!({}));
    assert_eq!(inputs[0]["depends_on"], json!([]));
    // traefik: path overridden, catalog tag, JSON-typed patches kept as types.
    let traefik = &inputs[1];
    assert_eq!(traefik["component_path"], "traefik-hardened");
    assert_eq!(traefik["source"]["oci_tag"], "33.2.1");
    assert_eq!(traefik["cluster_env_enabled"], true);
    assert_eq!(traefik["depends_on"], json!(["cert-manager"]));
    assert_eq!(traefik["patches"]["deployment.replicas"], 3);
    assert_eq!(traefik["patches"]["ports.websecure.tls.enabled"], true);
    assert_eq!(
        traefik["cluster"],
        json!({"name": "edge-prod-01", "dns": PROD, "environment": "prod"})
    );
    // kube-prometheus-stack: nested object patch value.
    assert_eq!(
        inputs[2]["patches"]["prometheus.prometheusSpec.resources"]["requests"]["memory"],
        "2Gi"
    );
}

#[tokio::test]
async fn namespaces_and_rolebindings_have_the_reference_shapes() {
    let app = TestApp::new();
    let dev = "lab-dev-01.k8s.example.com";
    let namespaces = app
        .get(&format!("/api/v2/flux/clusters/{dev}/namespaces"))
        .await;
    assert_flux_accepts(&namespaces);
    let first = &namespaces.json["inputs"][0];
    assert_eq!(first["id"], "cert-manager");
    assert_eq!(first["labels"]["toolkit.fluxcd.io/tenant"], "platform");
    assert_eq!(first["annotations"], json!({}));
    assert_eq!(first["cluster"]["environment"], "dev");

    let rolebindings = app
        .get(&format!("/api/v2/flux/clusters/{dev}/rolebindings"))
        .await;
    assert_flux_accepts(&rolebindings);
    let inputs = rolebindings.json["inputs"].as_array().unwrap();
    assert_eq!(
        inputs[0]["subjects"],
        json!([{"kind": "Group", "name": "platform-team", "apiGroup": "rbac.authorization.k8s.io"}])
    );
    let deployer = inputs.iter().find(|i| i["id"] == "ci-deployer").unwrap();
    assert_eq!(deployer["role"], "edit");
    assert_eq!(
        deployer["subjects"],
        json!([{"kind": "ServiceAccount", "name": "deployer", "namespace": "ci"}])
    );
}

#[tokio::test]
async fn unknown_cluster_is_404_never_an_empty_list() {
    let app = TestApp::new();
    for feed in ["platform-components", "namespaces", "rolebindings"] {
        let answer = app
            .get(&format!("/api/v2/flux/clusters/nowhere.example.com/{feed}"))
            .await;
        let message = answer.expect_error(poem::http::StatusCode::NOT_FOUND, "not_found");
        assert!(message.contains("nowhere.example.com"), "{message}");
    }
}

#[tokio::test]
async fn cluster_list_is_ordered_by_id_and_shards_by_environment_limit_offset() {
    let app = TestApp::new();
    let all = app.get("/api/v2/flux/clusters").await;
    assert_flux_accepts(&all);
    let ids = |answer: &crate::helpers::Answer| -> Vec<String> {
        answer.json["inputs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["id"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(
        ids(&all),
        ["edge-prod-01", "edge-prod-02", "edge-qa-01", "lab-dev-01"]
    );
    assert_eq!(
        all.json["inputs"][0],
        json!({"id": "edge-prod-01", "cluster_name": "edge-prod-01", "cluster_dns": PROD, "environment": "prod"})
    );
    assert_eq!(
        ids(&app.get("/api/v2/flux/clusters?environment=prod").await),
        ["edge-prod-01", "edge-prod-02"]
    );
    assert_eq!(
        ids(&app.get("/api/v2/flux/clusters?limit=2&offset=1").await),
        ["edge-prod-02", "edge-qa-01"]
    );
    assert_eq!(
        ids(&app.get("/api/v2/flux/clusters?offset=10").await),
        Vec::<String>::new()
    );
    let bad = app.get("/api/v2/flux/clusters?environment=staging").await;
    bad.expect_error(poem::http::StatusCode::BAD_REQUEST, "bad_request");
}

#[tokio::test]
async fn a_crud_change_is_visible_on_the_next_feed_request() {
    let app = TestApp::new();
    let feed = format!("/api/v2/flux/clusters/{PROD}/platform-components");
    let before = app.get(&feed).await;
    assert_eq!(before.json["inputs"][3]["source"]["oci_tag"], "6.22.0");

    app.put("/platform_components/loki", &json!({"oci_tag": "6.23.0"}))
        .await;
    let after = app.get(&feed).await;
    assert_eq!(
        after.json["inputs"][3]["source"]["oci_tag"], "6.23.0",
        "catalog edit"
    );

    let update = json!({"patches": {"loki": {"singleBinary.replicas": 2}}});
    assert_eq!(app.put("/clusters/edge-prod-01", &update).await.status, 200);
    let after = app.get(&feed).await;
    assert_eq!(
        after.json["inputs"][3]["patches"],
        json!({"singleBinary.replicas": 2}),
        "cluster edit"
    );
    assert_eq!(
        after.json["inputs"][1]["patches"],
        json!({}),
        "patches replaced as a whole"
    );

    app.put(
        "/namespaces/monitoring",
        &json!({"labels": {"tier": "gold"}}),
    )
    .await;
    let namespaces = app
        .get(&format!("/api/v2/flux/clusters/{PROD}/namespaces"))
        .await;
    assert_eq!(
        namespaces.json["inputs"][2]["labels"],
        json!({"tier": "gold"}),
        "namespace edit"
    );

    app.delete("/clusters/edge-prod-01").await;
    assert_eq!(app.get(&feed).await.status, 404, "deleted cluster");
}
