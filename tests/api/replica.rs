//! An edge replica (README, "Edge replicas on Litestream") over a copy of a real database file, in process: it
//! serves exactly the hub's feeds from memory, holds no connection to the file between
//! loads, refuses writes with 405 naming the hub, and keeps its last good copy when a load
//! fails. The end-to-end path through Litestream itself is in `litestream.rs`.

use std::path::{Path, PathBuf};

use poem::EndpointExt;
use poem::http::{Method, StatusCode};
use poem::test::TestClient;
use serde_json::json;

use crate::helpers::{READ, TestApp, WRITE, answer};
use flux_inputs::auth::Tokens;
use flux_inputs::config::{ApiMode, Secret};
use flux_inputs::store::Store;

const HUB: &str = "https://hub.example.com:8443";

/// A replica of `copy`, and a client for its routes (read-only mode, as a replica runs).
fn replica(copy: &Path) -> (Store, TestClient<poem::endpoint::BoxEndpoint<'static>>) {
    let store = Store::open_replica(copy, Some(HUB.to_owned()));
    let tokens = Tokens {
        read: Secret::new(READ),
        write: Secret::new(WRITE),
        events_require_cluster_identity: false,
    };
    let app = flux_inputs::app::build_app(store.clone(), tokens, ApiMode::ReadOnly).boxed();
    (store, TestClient::new(app))
}

/// Copies the hub's file as Litestream would leave it: whole, WAL folded in.
fn copy_of(hub: &TestApp, dir: &Path) -> PathBuf {
    let target = dir.join("copy.db");
    let conn = hub.store.connection().unwrap();
    let _ = std::fs::remove_file(&target);
    conn.execute("VACUUM INTO ?1", [target.to_str().unwrap()])
        .unwrap();
    target
}

/// Descriptors of this process open on `path` (a replica must hold none between loads).
fn open_descriptors(path: &Path) -> usize {
    let path = std::fs::canonicalize(path).unwrap();
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
        .filter(|target| target.starts_with(&path))
        .count()
}

async fn get(
    client: &TestClient<poem::endpoint::BoxEndpoint<'static>>,
    path: &str,
) -> crate::helpers::Answer {
    answer(
        client
            .get(path)
            .header("Authorization", format!("Bearer {READ}"))
            .send()
            .await
            .0,
    )
    .await
}

#[tokio::test]
async fn a_replica_serves_the_hubs_feeds_from_memory_and_refuses_writes() {
    let hub = TestApp::new();
    let dir = tempfile::tempdir().unwrap();
    let copy = copy_of(&hub, dir.path());
    let (store, client) = replica(&copy);
    assert!(
        store.load_copy().unwrap(),
        "the first load brings the inventory"
    );
    assert_eq!(
        open_descriptors(&copy),
        0,
        "no connection held between loads"
    );

    // Every feed and the fleet list, byte for byte as the hub serves them.
    for (path, status, bytes) in hub.all_feeds().await {
        let served = get(&client, &path).await;
        assert_eq!((served.status, &served.bytes), (status, &bytes), "{path}");
    }
    let unknown = get(&client, "/api/v2/flux/clusters/nope.example.com/namespaces").await;
    unknown.expect_error(StatusCode::NOT_FOUND, "not_found");
    assert_eq!(
        open_descriptors(&copy),
        0,
        "serving reads nothing from the file"
    );

    // Writes, events included, are refused before any token is looked at.
    for (method, path) in [
        (Method::PUT, "/clusters/lab-dev-01"),
        (Method::POST, "/platform_components"),
        (Method::DELETE, "/namespaces/apps"),
        (
            Method::POST,
            "/api/v2/flux/clusters/lab-dev-01.k8s.example.com/events",
        ),
    ] {
        let refused = answer(
            client
                .request(method.clone(), path)
                .header("Authorization", format!("Bearer {WRITE}"))
                .body_json(&json!({}))
                .send()
                .await
                .0,
        )
        .await;
        let message = refused.expect_error(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed");
        assert!(message.contains(HUB), "{method} {path}: {message}");
        assert_eq!(refused.header("Allow"), Some("GET, HEAD"));
    }

    let ready = client.get("/ready").send().await;
    ready.assert_status_is_ok();
    let status = get(&client, "/status/replica").await;
    assert_eq!(status.status, StatusCode::OK);
    assert_eq!(status.json["role"], "replica");
    assert_eq!(status.json["hub_url"], HUB);
    assert_eq!(status.json["loaded"], true);
    assert_eq!(status.json["clusters"], 4);
    // Views computed from the database are the hub's to answer.
    let fleet = get(&client, "/status/fleet").await;
    let message = fleet.expect_error(StatusCode::SERVICE_UNAVAILABLE, "service_unavailable");
    assert!(message.contains(HUB), "{message}");
    let metrics = String::from_utf8(get(&client, "/metrics").await.bytes).unwrap();
    assert!(
        metrics.contains("flux_inputs_replica_copy_loaded 1"),
        "{metrics}"
    );
    assert!(metrics.contains("flux_inputs_replica_loads_total{outcome=\"ok\"} 1"));

    // A hub write reaches the replica at its next load, not before.
    let edited = hub
        .put(
            "/platform_components/cert-manager",
            &json!({"oci_tag": "v1.17.0"}),
        )
        .await;
    assert_eq!(edited.status, StatusCode::OK);
    let path = "/api/v2/flux/clusters/lab-dev-01.k8s.example.com/platform-components";
    let before = get(&client, path).await.bytes;
    let copy = copy_of(&hub, dir.path());
    assert_eq!(get(&client, path).await.bytes, before, "served from memory");
    assert!(store.load_copy().unwrap());
    assert_eq!(get(&client, path).await.bytes, hub.get(path).await.bytes);
    assert!(
        !store.load_copy().unwrap(),
        "an unchanged inventory is not reloaded (heartbeat and tokens only)"
    );
    assert_eq!(open_descriptors(&copy), 0);
}

#[tokio::test]
async fn a_failed_load_keeps_the_last_good_copy_and_no_copy_is_not_ready() {
    let hub = TestApp::new();
    let dir = tempfile::tempdir().unwrap();
    // Nothing to load yet: not ready, feeds 503 (Flux keeps its last inputs).
    let (empty, empty_client) = replica(&dir.path().join("missing.db"));
    assert!(empty.load_copy().is_err());
    let ready = answer(empty_client.get("/ready").send().await.0).await;
    let message = ready.expect_error(StatusCode::SERVICE_UNAVAILABLE, "service_unavailable");
    assert!(message.contains("no consistent copy"), "{message}");
    let feed = get(&empty_client, "/api/v2/flux/clusters").await;
    feed.expect_error(StatusCode::SERVICE_UNAVAILABLE, "service_unavailable");

    let copy = copy_of(&hub, dir.path());
    let (store, client) = replica(&copy);
    store.load_copy().unwrap();
    let served = get(&client, "/api/v2/flux/clusters").await.bytes;
    // The copy turns into one of another schema (a hub upgraded first): the load fails and
    // the last good copy stays in service.
    rusqlite::Connection::open(&copy)
        .unwrap()
        .pragma_update(None, "user_version", 99)
        .unwrap();
    let err = store.load_copy().unwrap_err().to_string();
    assert!(err.contains("schema version 99"), "{err}");
    assert_eq!(get(&client, "/api/v2/flux/clusters").await.bytes, served);
    client.get("/ready").send().await.assert_status_is_ok();
    let status = get(&client, "/status/replica").await.json;
    assert!(
        status["last_error"]
            .as_str()
            .unwrap()
            .contains("schema version 99")
    );
    // The file gone altogether: the same.
    std::fs::remove_file(&copy).unwrap();
    assert!(store.load_copy().is_err());
    assert_eq!(get(&client, "/api/v2/flux/clusters").await.bytes, served);
}

#[tokio::test]
async fn a_hub_writes_a_heartbeat_a_replica_shows_its_age() {
    let hub = TestApp::configured(|config| config.role = flux_inputs::config::Role::Hub);
    assert_eq!(hub.store.role(), flux_inputs::config::Role::Hub);
    let now = hub.store.clock().now();
    hub.store
        .write(move |tx| flux_inputs::store::replica::beat(tx, now - 7))
        .await
        .unwrap();
    let status = hub.get("/status/replica").await.json;
    assert_eq!(status["role"], "hub");
    let age = status["heartbeat_age_seconds"].as_i64().unwrap();
    assert!((7..=8).contains(&age), "beaten 7 s before: {status}");
    let autocheckpoint: i64 = hub
        .store
        .connection()
        .unwrap()
        .query_row("PRAGMA wal_autocheckpoint", [], |row| row.get(0))
        .unwrap();
    assert_eq!(
        autocheckpoint, 0,
        "Litestream does the checkpoints on a hub"
    );
    let dir = tempfile::tempdir().unwrap();
    let (store, client) = replica(&copy_of(&hub, dir.path()));
    store.load_copy().unwrap();
    let status = get(&client, "/status/replica").await.json;
    assert!(status["heartbeat_at"].is_string(), "{status}");
    let age = status["heartbeat_age_seconds"].as_i64().unwrap();
    assert!(
        (7..=9).contains(&age),
        "the hub's beat, 7 s before: {status}"
    );
    let metrics = String::from_utf8(get(&client, "/metrics").await.bytes).unwrap();
    assert!(metrics.contains("flux_inputs_replica_heartbeat_age_seconds "));
    // A standalone server says so.
    let standalone = TestApp::new();
    assert_eq!(
        standalone.get("/status/replica").await.json["role"],
        "standalone"
    );
}
