//! The feed cache: byte-for-byte the uncached encoding, and a committed write is visible on
//! the very next read of every affected feed.

use serde_json::{Value, json};

use flux_inputs::config::{ApiMode, SeedSource};
use flux_inputs::store::clusters;
use flux_inputs::store::feeds::{self, Feed};

use crate::helpers::TestApp;

const PROD: &str = "edge-prod-01.k8s.example.com";

/// Every feed as the store encodes it without the cache.
async fn uncached(app: &TestApp) -> Vec<(String, Vec<u8>)> {
    app.store
        .read(|conn| {
            let mut out = Vec::new();
            for cluster in clusters::list(conn, &Default::default())? {
                for feed in Feed::ALL {
                    out.push((
                        feed.path(&cluster.cluster_dns),
                        feeds::build(conn, &cluster, feed)?.body,
                    ));
                }
            }
            Ok(out)
        })
        .await
        .unwrap()
}

async fn assert_cache_matches(app: &TestApp) {
    for (path, expected) in uncached(app).await {
        for round in ["miss", "hit"] {
            let answer = app.get(&path).await;
            assert_eq!(answer.status, 200, "{path}");
            assert_eq!(
                answer.bytes, expected,
                "{path} ({round}) equals the uncached encoding"
            );
        }
    }
}

#[tokio::test]
async fn repeated_reads_are_answered_from_the_cache() {
    let app = TestApp::new();
    let path = format!("/api/v2/flux/clusters/{PROD}/platform-components");
    let stats = app.store.feed_cache().stats();
    app.get(&path).await;
    let misses = stats.misses.load(std::sync::atomic::Ordering::Relaxed);
    for _ in 0..10 {
        assert_eq!(app.get(&path).await.status, 200);
    }
    assert_eq!(
        stats.misses.load(std::sync::atomic::Ordering::Relaxed),
        misses,
        "no more loads"
    );
    assert!(stats.hits() >= 10);
    assert_eq!(stats.stale.load(std::sync::atomic::Ordering::Relaxed), 0);
}

#[tokio::test]
async fn cached_feeds_are_the_uncached_bytes() {
    let app = TestApp::new();
    assert_cache_matches(&app).await;
    app.put(
        "/clusters/lab-dev-01",
        &json!({"patches": {"podinfo": {"quote\"d": "va\\lue\n", "ünï": [1, {"b": null}]}}}),
    )
    .await;
    assert_cache_matches(&app).await;
}

fn feed_of(app_answer: &Value, id: &str) -> Value {
    app_answer["inputs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["id"] == id)
        .cloned()
        .unwrap_or(Value::Null)
}

#[tokio::test]
async fn every_kind_of_write_is_visible_on_the_next_read() {
    let app = TestApp::new();
    let components = format!("/api/v2/flux/clusters/{PROD}/platform-components");
    let namespaces = format!("/api/v2/flux/clusters/{PROD}/namespaces");
    let rolebindings = format!("/api/v2/flux/clusters/{PROD}/rolebindings");
    app.all_feeds().await; // warm every cache entry

    // Cluster edit: an override and a patch.
    let mut refs = app.get("/clusters/edge-prod-01").await.json["platform_components"].clone();
    refs[3]["oci_tag"] = json!("6.30.0");
    app.put(
        "/clusters/edge-prod-01",
        &json!({"platform_components": refs}),
    )
    .await;
    assert_eq!(
        feed_of(&app.get(&components).await.json, "loki")["source"]["oci_tag"],
        "6.30.0"
    );

    // Catalog edit.
    app.put(
        "/platform_components/cert-manager",
        &json!({"component_version": "v1.17.0"}),
    )
    .await;
    assert_eq!(
        feed_of(&app.get(&components).await.json, "cert-manager")["component_version"],
        "v1.17.0"
    );

    // Namespace and rolebinding definitions.
    app.put("/namespaces/ingress", &json!({"labels": {"zone": "dmz"}}))
        .await;
    assert_eq!(
        feed_of(&app.get(&namespaces).await.json, "ingress")["labels"],
        json!({"zone": "dmz"})
    );
    app.put("/rolebindings/platform-admins", &json!({"role": "admin"}))
        .await;
    assert_eq!(
        feed_of(&app.get(&rolebindings).await.json, "platform-admins")["role"],
        "admin"
    );

    // A new definition assigned to the cluster, then unassigned and deleted.
    app.post("/namespaces", &json!({"id": "edge-apps"})).await;
    let mut assigned = app.get("/clusters/edge-prod-01").await.json["namespaces"].clone();
    assigned
        .as_array_mut()
        .unwrap()
        .push(json!({"id": "edge-apps"}));
    app.put("/clusters/edge-prod-01", &json!({"namespaces": assigned}))
        .await;
    assert!(!feed_of(&app.get(&namespaces).await.json, "edge-apps").is_null());
    app.put(
        "/clusters/edge-prod-01",
        &json!({"namespaces": [{"id": "cert-manager"}]}),
    )
    .await;
    assert!(feed_of(&app.get(&namespaces).await.json, "edge-apps").is_null());
    assert_eq!(app.delete("/namespaces/edge-apps").await.status, 200);

    // New cluster, renamed DNS, deleted cluster.
    app.post("/clusters", &json!({"id": "edge-uat-01", "cluster_name": "edge-uat-01", "cluster_dns": "edge-uat-01.example.com",
                                  "environment": "uat", "platform_components": []}))
        .await;
    assert_eq!(
        app.get("/api/v2/flux/clusters/edge-uat-01.example.com/namespaces")
            .await
            .status,
        200
    );
    app.put(
        "/clusters/edge-uat-01",
        &json!({"cluster_dns": "edge-uat-02.example.com"}),
    )
    .await;
    assert_eq!(
        app.get("/api/v2/flux/clusters/edge-uat-01.example.com/namespaces")
            .await
            .status,
        404
    );
    assert_eq!(
        app.get("/api/v2/flux/clusters/edge-uat-02.example.com/namespaces")
            .await
            .status,
        200
    );
    let list = app.get("/api/v2/flux/clusters?environment=uat").await;
    assert_eq!(
        list.json["inputs"][0]["cluster_dns"], "edge-uat-02.example.com",
        "the fleet list too"
    );
    app.delete("/clusters/edge-prod-01").await;
    assert_eq!(app.get(&components).await.status, 404);
    assert_eq!(
        app.get("/api/v2/flux/clusters?environment=prod").await.json["inputs"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test]
async fn a_catalog_edit_reaches_every_cluster_on_the_next_read() {
    let dir = tempfile::tempdir().unwrap();
    let clusters: Vec<Value> = (0..300)
        .map(|i| {
            json!({"id": format!("site-{i:03}"), "cluster_name": format!("site-{i:03}"),
                   "cluster_dns": format!("site-{i:03}.edge.example.com"), "environment": "prod",
                   "platform_components": [{"id": "agent", "enabled": true, "oci_tag": null, "component_path": null}]})
        })
        .collect();
    let seed = json!({"platform_components": [{"id": "agent", "component_path": "agent", "component_version": "1",
                      "oci_url": "oci://registry.example.com/agent", "oci_tag": "1.0.0"}], "clusters": clusters});
    let path = dir.path().join("seed.json");
    std::fs::write(&path, seed.to_string()).unwrap();
    let app = TestApp::with(ApiMode::Crud, SeedSource::File(path));
    let feed = |i: usize| {
        format!("/api/v2/flux/clusters/site-{i:03}.edge.example.com/platform-components")
    };
    for i in 0..300 {
        assert_eq!(
            app.get(&feed(i)).await.json["inputs"][0]["source"]["oci_tag"],
            "1.0.0"
        );
    }
    let stats = app.store.feed_cache().stats();
    let misses = || stats.misses.load(std::sync::atomic::Ordering::Relaxed);
    let loaded = misses();
    assert_eq!(
        app.put("/platform_components/agent", &json!({"oci_tag": "1.1.0"}))
            .await
            .status,
        200
    );
    for i in 0..300 {
        assert_eq!(
            app.get(&feed(i)).await.json["inputs"][0]["source"]["oci_tag"],
            "1.1.0",
            "site-{i:03}"
        );
    }
    // The clusters stayed cached: only the catalog they are encoded against moved.
    assert_eq!(misses(), loaded, "no cluster reloaded after a catalog edit");
    assert_cache_matches(&app).await;
    // A cluster's own write reloads that cluster alone.
    let own = json!({"platform_components": [{"id": "agent", "enabled": true, "oci_tag": "0.9.0",
                                              "component_path": null}]});
    assert_eq!(app.put("/clusters/site-007", &own).await.status, 200);
    assert_eq!(
        app.get(&feed(7)).await.json["inputs"][0]["source"]["oci_tag"],
        "0.9.0"
    );
    assert_eq!(
        app.get(&feed(8)).await.json["inputs"][0]["source"]["oci_tag"],
        "1.1.0"
    );
    assert_eq!(misses(), loaded + 1);
}
