//! Poll liveness: the last poll per cluster and feed, the client seen, stale clusters.

use std::time::Duration;

use poem::http::Method;
use serde_json::Value;

use crate::helpers::{READ, TestApp};
use crate::process::{Server, get};

const FEED: &str = "/api/v2/flux/clusters/edge-qa-01.k8s.example.com/namespaces";

async fn poll_as(app: &TestApp, path: &str, user_agent: &str) {
    let answer = app
        .raw(
            Method::GET,
            path,
            &[
                ("Authorization", &format!("Bearer {READ}")),
                ("User-Agent", user_agent),
            ],
            Vec::new(),
        )
        .await;
    assert_eq!(answer.status, 200);
}

fn status_of<'a>(list: &'a Value, id: &str) -> &'a Value {
    list.as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == id)
        .unwrap()
}

#[tokio::test]
async fn status_shows_last_poll_client_version_and_staleness() {
    let app = TestApp::new();
    poll_as(&app, FEED, "flux-operator/v0.33.0").await;
    let status = app.get("/status/clusters").await;
    assert_eq!(status.status, 200);
    let qa = status_of(&status.json, "edge-qa-01");
    assert_eq!(qa["stale"], false);
    assert_eq!(qa["operator_version"], "v0.33.0");
    assert_eq!(
        qa["polls"]["namespaces"]["user_agent"],
        "flux-operator/v0.33.0"
    );
    assert!(
        qa["polls"]["platform-components"].is_null(),
        "never polled: null"
    );
    let dev = status_of(&status.json, "lab-dev-01");
    assert_eq!(dev["stale"], true, "never polled is stale");
    assert!(dev["operator_version"].is_null());

    let stale_only = app.get("/status/clusters?stale=true").await;
    let ids: Vec<&str> = stale_only
        .json
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["edge-prod-01", "edge-prod-02", "lab-dev-01"]);
    // By default a count, no series per cluster (100,000 clusters would be most of it).
    let metrics = String::from_utf8(app.get("/metrics").await.bytes).unwrap();
    assert!(
        metrics.contains("flux_inputs_clusters_stale 3"),
        "{metrics}"
    );
    assert!(!metrics.contains("flux_inputs_cluster_stale{"), "{metrics}");
    let metrics = String::from_utf8(app.get("/metrics?per_cluster=true").await.bytes).unwrap();
    assert!(
        metrics.contains(r#"flux_inputs_cluster_stale{cluster="edge-qa-01"} 0"#),
        "{metrics}"
    );
    assert!(metrics.contains(r#"flux_inputs_cluster_stale{cluster="lab-dev-01"} 1"#));
    assert!(metrics.contains(
        r#"flux_inputs_cluster_last_poll_timestamp_seconds{cluster="edge-qa-01",feed="namespaces"}"#
    ));

    // A failed poll (unknown cluster) or a wrong token records nothing.
    let _ = app
        .get("/api/v2/flux/clusters/nope.example.com/namespaces")
        .await;
    let _ = app
        .call(
            Method::GET,
            "/api/v2/flux/clusters/lab-dev-01.k8s.example.com/namespaces",
            Some("bad"),
            None,
        )
        .await;
    let status = app.get("/status/clusters").await;
    assert_eq!(status_of(&status.json, "lab-dev-01")["stale"], true);
}

#[tokio::test]
async fn a_cluster_goes_stale_after_the_configured_window() {
    let app = TestApp::configured(|config| config.poll_stale_after = 0);
    poll_as(&app, FEED, "flux-operator/v0.33.0").await;
    app.store.clock().advance(1);
    let status = app.get("/status/clusters").await;
    assert_eq!(status_of(&status.json, "edge-qa-01")["stale"], true);
}

/// Polls are kept in memory and written in batches (every 30 s and at shutdown), except a
/// poll that makes a feed fresh, which is written within a second so that the offline
/// commands (`flux-inputs status`) agree with the server about staleness.
#[test]
fn polls_are_batched_in_memory_and_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let database = dir.path().join("inventory.db");
    let mut server = Server::ready(&database, &[("AUTH_TOKEN", "t")]);
    let stored = |db: &std::path::Path| -> Vec<String> {
        let conn = rusqlite::Connection::open(db).unwrap();
        let mut stmt = conn
            .prepare("SELECT user_agent FROM cluster_polls")
            .unwrap();
        stmt.query_map([], |r| r.get(0))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap()
    };
    let poll = |agent: &str| {
        let (status, _) = crate::process::request_with(
            server.port,
            "GET",
            FEED,
            &[("Authorization", "Bearer t"), ("User-Agent", agent)],
            None,
        )
        .unwrap();
        assert_eq!(status, 200);
    };
    poll("flux-operator/v0.43.0");
    crate::process::eventually(
        "the first poll is in the file",
        Duration::from_secs(10),
        || stored(&database) == ["flux-operator/v0.43.0"],
    );
    for _ in 0..20 {
        poll("flux-operator/v0.58.1");
    }
    assert_eq!(
        stored(&database),
        ["flux-operator/v0.43.0"],
        "repeated polls of a fresh feed write nothing"
    );
    server.signal("-TERM");
    assert!(server.wait_exit(Duration::from_secs(15)).success());
    assert_eq!(
        stored(&database),
        ["flux-operator/v0.58.1"],
        "flushed at shutdown: one row for one cluster and feed, the latest poll"
    );

    let server = Server::ready(&database, &[("AUTH_TOKEN", "t")]);
    let (_, body) = get(server.port, "/status/clusters", Some("t")).unwrap();
    let list: Value = serde_json::from_str(&body).unwrap();
    assert!(
        status_of(&list, "edge-qa-01")["polls"]["namespaces"]["at"]
            .as_u64()
            .is_some(),
        "{body}"
    );
}
