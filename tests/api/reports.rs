//! Flux reports back (README, "Flux reports back"): notification-controller events in, convergence per
//! component out. Event bodies are shaped exactly as notification-controller posts them.

use poem::http::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{READ, TestApp, WRITE};

const DEV: &str = "lab-dev-01.k8s.example.com";
const QA: &str = "edge-qa-01.k8s.example.com";

/// A HelmRelease event as helm-controller emits it.
fn helm_event(name: &str, severity: &str, reason: &str, at: &str, revision: &str) -> Value {
    json!({
        "involvedObject": {"kind": "HelmRelease", "namespace": "flux-system", "name": name,
                           "uid": "5b1c", "apiVersion": "helm.toolkit.fluxcd.io/v2",
                           "resourceVersion": "918273"},
        "severity": severity,
        "timestamp": at,
        "message": format!("{reason} for release {name} with chart {name}@{revision}"),
        "reason": reason,
        "metadata": {"app-version": revision, "component": name, "revision": revision},
        "reportingController": "helm-controller",
        "reportingInstance": "helm-controller-5f7c9d8b6-x2k9p"
    })
}

async fn send(app: &TestApp, dns: &str, token: &str, event: &Value) -> crate::helpers::Answer {
    app.call(
        Method::POST,
        &format!("/api/v2/flux/clusters/{dns}/events"),
        Some(token),
        Some(event),
    )
    .await
}

/// cert-manager's HelmRelease failing to upgrade to v1.16.2 at `at`.
fn cert_manager_failure(at: &str) -> Value {
    helm_event("cert-manager", "error", "UpgradeFailed", at, "v1.16.2")
}

#[track_caller]
fn accepted(answer: &crate::helpers::Answer) {
    assert_eq!(answer.status, StatusCode::ACCEPTED, "{}", answer.json);
    assert_eq!(answer.json, json!({"accepted": true}));
}

/// Polls the cluster's platform-components feed, so it is not stale.
async fn poll(app: &TestApp, dns: &str) {
    let answer = app
        .get(&format!("/api/v2/flux/clusters/{dns}/platform-components"))
        .await;
    assert_eq!(answer.status, StatusCode::OK);
}

/// The component's entry in `/status/clusters/{id}`.
async fn component(app: &TestApp, cluster: &str, component: &str) -> Value {
    let status = app.get(&format!("/status/clusters/{cluster}")).await;
    assert_eq!(status.status, StatusCode::OK, "{}", status.json);
    status.json["components"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["component"] == component)
        .unwrap_or_else(|| panic!("{component} in {}", status.json))
        .clone()
}

async fn state(app: &TestApp, cluster: &str, name: &str) -> String {
    component(app, cluster, name).await["state"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn upgrades_failures_and_rollbacks_set_the_state() {
    let app = TestApp::new();
    poll(&app, DEV).await;
    assert_eq!(state(&app, "lab-dev-01", "cert-manager").await, "unknown");

    // Waiting on a dependency decides nothing, but something was reported.
    let waiting = helm_event(
        "cert-manager",
        "info",
        "DependencyNotReady",
        "2026-08-20T10:00:00Z",
        "v1.16.2",
    );
    accepted(&send(&app, DEV, READ, &waiting).await);
    assert_eq!(
        state(&app, "lab-dev-01", "cert-manager").await,
        "progressing"
    );

    // The catalog wants v1.16.2; an OCI chart reports `<semver>+<digest>`.
    let upgraded = helm_event(
        "cert-manager",
        "info",
        "UpgradeSucceeded",
        "2026-08-20T10:15:42Z",
        "v1.16.2+a1b2c3d4e5f6",
    );
    accepted(&send(&app, DEV, READ, &upgraded).await);
    let converged = component(&app, "lab-dev-01", "cert-manager").await;
    assert_eq!(converged["state"], "converged");
    assert_eq!(converged["desired_version"], "v1.16.2");
    assert_eq!(converged["reported_revision"], "v1.16.2+a1b2c3d4e5f6");
    assert_eq!(converged["event_time"], "2026-08-20T10:15:42Z");
    assert_eq!(converged["authenticated_as"], "fleet");

    let failed = cert_manager_failure("2026-08-20T10:20:00Z");
    accepted(&send(&app, DEV, READ, &failed).await);
    let entry = component(&app, "lab-dev-01", "cert-manager").await;
    assert_eq!(entry["state"], "failed");
    assert_eq!(entry["reason"], "UpgradeFailed");
    assert!(
        entry["message"]
            .as_str()
            .unwrap()
            .starts_with("UpgradeFailed")
    );

    // helm-controller rolled the release back to the old chart: still a failure.
    let rolled_back = helm_event(
        "cert-manager",
        "info",
        "RollbackSucceeded",
        "2026-08-20T10:21:00Z",
        "v1.15.4",
    );
    accepted(&send(&app, DEV, READ, &rolled_back).await);
    let entry = component(&app, "lab-dev-01", "cert-manager").await;
    assert_eq!(entry["state"], "failed");
    assert_eq!(entry["reason"], "RollbackSucceeded");

    let fixed = helm_event(
        "cert-manager",
        "info",
        "UpgradeSucceeded",
        "2026-08-20T10:30:00Z",
        "v1.16.2",
    );
    accepted(&send(&app, DEV, READ, &fixed).await);
    assert_eq!(state(&app, "lab-dev-01", "cert-manager").await, "converged");

    // Newest first, every event kept.
    let status = app.get("/status/clusters/lab-dev-01").await;
    let reasons: Vec<&str> = status.json["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["reason"].as_str().unwrap())
        .collect();
    assert_eq!(
        reasons,
        [
            "UpgradeSucceeded",
            "RollbackSucceeded",
            "UpgradeFailed",
            "UpgradeSucceeded",
            "DependencyNotReady"
        ]
    );
}

#[tokio::test]
async fn late_and_repeated_events_never_overwrite_newer_state() {
    let app = TestApp::new();
    poll(&app, DEV).await;
    let success = helm_event(
        "cert-manager",
        "info",
        "UpgradeSucceeded",
        "2026-08-20T10:15:42Z",
        "v1.16.2",
    );
    let earlier_failure = cert_manager_failure("2026-08-20T10:10:00Z");
    accepted(&send(&app, DEV, READ, &success).await);
    // Delivered late (notification-controller retries for ~15 s, unordered).
    accepted(&send(&app, DEV, READ, &earlier_failure).await);
    assert_eq!(state(&app, "lab-dev-01", "cert-manager").await, "converged");
    // The same event twice: one entry, nothing changes.
    accepted(&send(&app, DEV, READ, &success).await);
    let status = app.get("/status/clusters/lab-dev-01").await;
    assert_eq!(status.json["events"].as_array().unwrap().len(), 2);
    assert_eq!(state(&app, "lab-dev-01", "cert-manager").await, "converged");

    // Equal timestamps (whole seconds): the later arrival wins.
    let same_second_failure = helm_event(
        "cert-manager",
        "error",
        "TestFailed",
        "2026-08-20T10:15:42Z",
        "v1.16.2",
    );
    accepted(&send(&app, DEV, READ, &same_second_failure).await);
    assert_eq!(state(&app, "lab-dev-01", "cert-manager").await, "failed");
}

#[tokio::test]
async fn a_report_for_a_version_no_longer_desired_is_progressing() {
    let app = TestApp::new();
    poll(&app, DEV).await;
    let old = helm_event(
        "cert-manager",
        "info",
        "UpgradeSucceeded",
        "2026-08-20T10:00:00Z",
        "v1.16.2",
    );
    accepted(&send(&app, DEV, READ, &old).await);
    // A failure of the current version, then the catalog moves on to a fix.
    let failure = helm_event(
        "external-secrets",
        "error",
        "InstallFailed",
        "2026-08-20T10:00:00Z",
        "0.10.7",
    );
    accepted(&send(&app, DEV, READ, &failure).await);
    assert_eq!(
        state(&app, "lab-dev-01", "external-secrets").await,
        "failed"
    );

    for (id, tag) in [("cert-manager", "v1.17.0"), ("external-secrets", "0.10.8")] {
        let mut entry = app.get(&format!("/platform_components/{id}")).await.json;
        entry["oci_tag"] = json!(tag);
        let put = app.put(&format!("/platform_components/{id}"), &entry).await;
        assert_eq!(put.status, StatusCode::OK, "{}", put.json);
    }
    let entry = component(&app, "lab-dev-01", "cert-manager").await;
    assert_eq!(entry["state"], "progressing");
    assert_eq!(entry["desired_version"], "v1.17.0");
    assert_eq!(entry["reported_revision"], "v1.16.2");
    assert_eq!(
        state(&app, "lab-dev-01", "external-secrets").await,
        "progressing",
        "the failure was about the version no longer wanted"
    );

    // A success for the old version arriving now (a slow cluster) is still not converged.
    let stale_success = helm_event(
        "cert-manager",
        "info",
        "UpgradeSucceeded",
        "2026-08-20T10:05:00Z",
        "v1.16.2",
    );
    accepted(&send(&app, DEV, READ, &stale_success).await);
    assert_eq!(
        state(&app, "lab-dev-01", "cert-manager").await,
        "progressing"
    );
    let new = helm_event(
        "cert-manager",
        "info",
        "UpgradeSucceeded",
        "2026-08-20T10:10:00Z",
        "1.17.0",
    );
    accepted(&send(&app, DEV, READ, &new).await);
    assert_eq!(state(&app, "lab-dev-01", "cert-manager").await, "converged");
}

#[tokio::test]
async fn disabled_components_matching_by_name_and_stale_clusters() {
    let app = TestApp::new();
    poll(&app, QA).await;
    // edge-qa-01 has loki assigned but disabled: a failure report does not make it failed.
    let loki = helm_event(
        "loki",
        "error",
        "UpgradeFailed",
        "2026-08-20T10:00:00Z",
        "6.22.0",
    );
    accepted(&send(&app, QA, READ, &loki).await);
    assert_eq!(state(&app, "edge-qa-01", "loki").await, "disabled");

    // No `component` metadata: the HelmRelease named as the component is its release.
    let mut traefik = helm_event(
        "traefik",
        "info",
        "InstallSucceeded",
        "2026-08-20T10:00:00Z",
        "33.2.1",
    );
    traefik["metadata"] = json!({"revision": "33.2.1"});
    accepted(&send(&app, QA, READ, &traefik).await);
    assert_eq!(state(&app, "edge-qa-01", "traefik").await, "converged");
    // Metadata naming the component wins over the object's name.
    let mut renamed = helm_event(
        "podinfo-frontend",
        "error",
        "UpgradeFailed",
        "2026-08-20T10:01:00Z",
        "6.7.1",
    );
    renamed["metadata"]["component"] = json!("podinfo");
    accepted(&send(&app, QA, READ, &renamed).await);
    assert_eq!(state(&app, "edge-qa-01", "podinfo").await, "failed");
    // A Kustomization's events are kept but decide no component.
    let kustomization = json!({
        "involvedObject": {"kind": "Kustomization", "namespace": "flux-system", "name": "cert-manager"},
        "severity": "error", "timestamp": "2026-08-20T10:02:00Z",
        "message": "health check failed", "reason": "HealthCheckFailed"
    });
    accepted(&send(&app, QA, READ, &kustomization).await);
    assert_eq!(state(&app, "edge-qa-01", "cert-manager").await, "unknown");

    // edge-prod-01 never polled: stale, whatever it reports.
    let prod = helm_event(
        "traefik",
        "info",
        "UpgradeSucceeded",
        "2026-08-20T10:00:00Z",
        "33.2.1",
    );
    accepted(&send(&app, "edge-prod-01.k8s.example.com", READ, &prod).await);
    let status = app.get("/status/clusters/edge-prod-01").await;
    assert_eq!(status.json["stale"], true);
    assert!(
        status.json["components"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["state"] == "stale")
    );

    let fleet = app.get("/status/fleet").await;
    assert_eq!(fleet.status, StatusCode::OK);
    assert_eq!(fleet.json["clusters"], 4);
    assert_eq!(fleet.json["stale_count"], 3, "only edge-qa-01 polled");
    let loki = fleet.json["components"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["component"] == "loki")
        .unwrap();
    assert_eq!(loki["counts"]["disabled"], 1);
    assert_eq!(loki["counts"]["stale"], 1, "edge-prod-01 has loki enabled");

    let components = app.get("/status/components/traefik").await;
    assert_eq!(components.status, StatusCode::OK, "{}", components.json);
    assert_eq!(components.json["clusters"], 4);
    assert_eq!(components.json["counts"]["converged"], 1);
    assert_eq!(components.json["counts"]["stale"], 3);
    assert_eq!(components.json["revisions"], json!({"33.2.1": 2}));
    let converged = app
        .get("/status/components/traefik?state=converged")
        .await
        .json;
    assert_eq!(converged["items"].as_array().unwrap().len(), 1);
    assert_eq!(converged["items"][0]["cluster"], "edge-qa-01");
    let prod = app
        .get("/status/components/traefik?environment=prod&limit=1&offset=1")
        .await
        .json;
    assert_eq!(prod["clusters"], 2);
    assert_eq!(prod["items"].as_array().unwrap().len(), 1);
    assert_eq!(prod["items"][0]["cluster"], "edge-prod-02");
    app.get("/status/components/no-such")
        .await
        .expect_error(StatusCode::NOT_FOUND, "not_found");
    app.get("/status/clusters/no-such")
        .await
        .expect_error(StatusCode::NOT_FOUND, "not_found");
    app.get("/status/components/traefik?state=sideways")
        .await
        .expect_error(StatusCode::BAD_REQUEST, "bad_request");
}

#[tokio::test]
async fn tokens_decide_who_may_report_and_see() {
    let app = TestApp::new();
    let created = app
        .post(
            "/tokens",
            &json!({"name": "dev-flux", "cluster": "lab-dev-01"}),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.json);
    let own = created.json["token"].as_str().unwrap().to_owned();
    let event = helm_event(
        "cert-manager",
        "info",
        "UpgradeSucceeded",
        "2026-08-20T10:00:00Z",
        "v1.16.2",
    );
    accepted(&send(&app, DEV, &own, &event).await);
    send(&app, QA, &own, &event)
        .await
        .expect_error(StatusCode::FORBIDDEN, "forbidden");
    send(&app, DEV, "not-a-token", &event)
        .await
        .expect_error(StatusCode::UNAUTHORIZED, "unauthorized");
    let anonymous = app
        .raw(
            Method::POST,
            &format!("/api/v2/flux/clusters/{DEV}/events"),
            &[("content-type", "application/json")],
            event.to_string().into_bytes(),
        )
        .await;
    anonymous.expect_error(StatusCode::UNAUTHORIZED, "unauthorized");
    let later = helm_event(
        "traefik",
        "info",
        "UpgradeSucceeded",
        "2026-08-20T10:00:00Z",
        "34.0.0-rc.1",
    );
    accepted(&send(&app, DEV, WRITE, &later).await);
    poll(&app, DEV).await;
    assert_eq!(
        component(&app, "lab-dev-01", "cert-manager").await["authenticated_as"],
        "cluster"
    );
    assert_eq!(
        component(&app, "lab-dev-01", "traefik").await["authenticated_as"],
        "write"
    );

    // The cluster's token sees its own status only.
    let own_status = app
        .call(Method::GET, "/status/clusters/lab-dev-01", Some(&own), None)
        .await;
    assert_eq!(own_status.status, StatusCode::OK);
    app.call(Method::GET, "/status/clusters/edge-qa-01", Some(&own), None)
        .await
        .expect_error(StatusCode::FORBIDDEN, "forbidden");
    let fleet = app
        .call(Method::GET, "/status/fleet", Some(&own), None)
        .await;
    assert_eq!(fleet.json["clusters"], 1);
    let traefik = app
        .call(Method::GET, "/status/components/traefik", Some(&own), None)
        .await;
    assert_eq!(traefik.json["clusters"], 1);
    assert_eq!(traefik.json["items"][0]["cluster"], "lab-dev-01");
    // Still no other read route for it.
    app.call(Method::GET, "/status/clusters", Some(&own), None)
        .await
        .expect_error(StatusCode::FORBIDDEN, "forbidden");
}

#[tokio::test]
async fn cluster_identity_can_be_required() {
    let app = TestApp::configured(|config| config.events_require_cluster_identity = true);
    let own = app
        .post(
            "/tokens",
            &json!({"name": "dev-flux", "cluster": "lab-dev-01"}),
        )
        .await
        .json["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let event = helm_event(
        "cert-manager",
        "info",
        "UpgradeSucceeded",
        "2026-08-20T10:00:00Z",
        "v1.16.2",
    );
    for shared in [READ, WRITE] {
        send(&app, DEV, shared, &event)
            .await
            .expect_error(StatusCode::FORBIDDEN, "forbidden");
    }
    accepted(&send(&app, DEV, &own, &event).await);
}

#[tokio::test]
async fn bad_events_are_refused_alone() {
    let app = TestApp::new();
    let path = format!("/api/v2/flux/clusters/{DEV}/events");
    let post = |body: Vec<u8>| {
        let path = path.clone();
        let app = &app;
        async move {
            app.raw(
                Method::POST,
                &path,
                &[
                    ("authorization", "Bearer read-token"),
                    ("content-type", "application/json"),
                ],
                body,
            )
            .await
        }
    };
    let good = helm_event(
        "cert-manager",
        "info",
        "UpgradeSucceeded",
        "2026-08-20T10:00:00Z",
        "v1.16.2",
    );
    let without = |field: &str| {
        let mut event = good.clone();
        event.as_object_mut().unwrap().remove(field);
        event.to_string().into_bytes()
    };
    let with = |pointer: &str, value: Value| {
        let mut event = good.clone();
        *event.pointer_mut(pointer).unwrap() = value;
        event.to_string().into_bytes()
    };
    for (body, words) in [
        (b"{not json".to_vec(), "not a valid event"),
        (b"".to_vec(), "not a valid event"),
        (b"[]".to_vec(), "not a valid event"),
        (without("involvedObject"), "involvedObject"),
        (without("severity"), "severity"),
        (without("timestamp"), "timestamp"),
        (without("reason"), "reason"),
        (with("/severity", json!("warning")), "warning"),
        (with("/timestamp", json!("yesterday")), "RFC 3339"),
        (
            with("/involvedObject/name", json!("")),
            "involvedObject.name",
        ),
        (with("/involvedObject/kind", json!(7)), "not a valid event"),
        (with("/metadata/revision", json!(1.5)), "not a valid event"),
    ] {
        let answer = post(body).await;
        let message = answer.expect_error(StatusCode::BAD_REQUEST, "bad_request");
        assert!(message.contains(words), "{message} should name {words}");
    }
    let huge = json!({"pad": "x".repeat(300 * 1024)});
    post(huge.to_string().into_bytes())
        .await
        .expect_error(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");
    send(&app, "no-such.example.com", READ, &good)
        .await
        .expect_error(StatusCode::NOT_FOUND, "not_found");

    // Like every JSON route: a body not declared as JSON is a 415 (notification-controller
    // always sends application/json).
    for headers in [
        vec![("authorization", "Bearer read-token")],
        vec![
            ("authorization", "Bearer read-token"),
            ("content-type", "text/plain"),
        ],
    ] {
        let answer = app
            .raw(Method::POST, &path, &headers, good.to_string().into_bytes())
            .await;
        assert_eq!(
            answer.status,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "{headers:?}"
        );
    }

    // New upstream fields are ignored; a long message is kept to 2 KiB.
    let mut future = good.clone();
    future["involvedObject"]["fieldPath"] = json!("spec");
    future["newField"] = json!({"x": 1});
    future["message"] = json!("é".repeat(19_500));
    accepted(&post(future.to_string().into_bytes()).await);
    let status = app.get("/status/clusters/lab-dev-01").await;
    let kept = status.json["events"][0]["message"].as_str().unwrap();
    assert!(kept.len() <= 2048 && kept.len() >= 2046, "{}", kept.len());
}

#[tokio::test]
async fn events_are_status_not_inventory() {
    let app = TestApp::new();
    let feeds_before = app.all_feeds().await;
    let audit_before = app.get("/audit").await.json;
    for (i, reason) in ["UpgradeFailed", "UpgradeSucceeded", "RollbackSucceeded"]
        .iter()
        .enumerate()
    {
        let severity = if reason.ends_with("Failed") {
            "error"
        } else {
            "info"
        };
        let event = helm_event(
            "cert-manager",
            severity,
            reason,
            &format!("2026-08-20T10:0{i}:00Z"),
            "v1.16.2",
        );
        accepted(&send(&app, DEV, READ, &event).await);
    }
    app.get("/status/fleet").await;
    assert_eq!(app.all_feeds().await, feeds_before);
    assert_eq!(app.get("/audit").await.json, audit_before);

    // Reports belong to the cluster, not the name: deleted with it, and a cluster created
    // again under the same DNS name starts with nothing reported.
    let before = app.get("/clusters/lab-dev-01").await.json;
    let deleted = app.delete("/clusters/lab-dev-01").await;
    assert_eq!(deleted.status, StatusCode::OK, "{}", deleted.json);
    let left: i64 = rusqlite::Connection::open(app.store.path())
        .unwrap()
        .query_row(
            "SELECT (SELECT count(*) FROM reported_events) + (SELECT count(*) FROM reported_objects)",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(left, 0);
    let created = app.post("/clusters", &before).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.json);
    assert_eq!(state(&app, "lab-dev-01", "cert-manager").await, "unknown");
}

/// A cluster whose DNS name changes keeps what it reported.
#[tokio::test]
async fn reports_follow_a_cluster_whose_name_changes() {
    let app = TestApp::new();
    poll(&app, DEV).await;
    let event = cert_manager_failure("2026-08-20T10:00:00Z");
    accepted(&send(&app, DEV, READ, &event).await);
    assert_eq!(state(&app, "lab-dev-01", "cert-manager").await, "failed");
    let renamed = app
        .put(
            "/clusters/lab-dev-01",
            &json!({"cluster_dns": "lab-dev-01.k8s.example.org"}),
        )
        .await;
    assert_eq!(renamed.status, StatusCode::OK, "{}", renamed.json);
    poll(&app, "lab-dev-01.k8s.example.org").await;
    assert_eq!(state(&app, "lab-dev-01", "cert-manager").await, "failed");
}

#[tokio::test]
async fn metrics_count_events_and_clusters_per_state_without_cluster_labels() {
    let app = TestApp::new();
    poll(&app, DEV).await;
    for name in ["cert-manager", "traefik"] {
        let event = helm_event(
            name,
            "error",
            "UpgradeFailed",
            "2026-08-20T10:00:00Z",
            "v1.16.2",
        );
        accepted(&send(&app, DEV, READ, &event).await);
    }
    let mut odd = helm_event(
        "podinfo",
        "info",
        "MadeUpReason",
        "2026-08-20T10:00:00Z",
        "1",
    );
    odd["involvedObject"]["kind"] = json!("Bucket");
    accepted(&send(&app, DEV, READ, &odd).await);
    app.get("/status/fleet").await;
    let metrics = String::from_utf8(app.get("/metrics").await.bytes).unwrap();
    assert!(metrics.contains(
        "flux_inputs_events_received_total{kind=\"HelmRelease\",reason=\"UpgradeFailed\",severity=\"error\"} 2"
    ));
    assert!(metrics.contains(
        "flux_inputs_events_received_total{kind=\"other\",reason=\"other\",severity=\"info\"} 1"
    ));
    assert!(
        metrics.contains(
            "flux_inputs_component_clusters{component=\"cert-manager\",state=\"failed\"} 1"
        )
    );
    assert!(
        metrics.contains(
            "flux_inputs_component_clusters{component=\"cert-manager\",state=\"stale\"} 3"
        )
    );
    for line in metrics.lines().filter(|l| {
        l.starts_with("flux_inputs_events_received_total")
            || l.starts_with("flux_inputs_component_clusters")
    }) {
        assert!(!line.contains("cluster="), "{line}");
    }
}

/// A burst of events from 400 clusters through the real binary on 127.0.0.1 while Flux
/// polls: every event accepted, no 5xx, every feed answered byte-for-byte as before, the
/// events saved by the server's own flusher, at most 100 kept per cluster.
#[test]
fn an_events_burst_from_many_clusters_leaves_the_feeds_alone() {
    use crate::process::{Server, get, request};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    const CLUSTERS: usize = 400;
    const SENDERS: usize = 4;
    const EVENTS_PER_SENDER: usize = 600;
    let dir = tempfile::tempdir().unwrap();
    let seed = dir.path().join("fleet.json");
    crate::scale::generated_seed(&seed, CLUSTERS);
    let server = Server::ready(
        &dir.path().join("inventory.db"),
        &[
            ("AUTH_TOKEN", "t"),
            ("SEED_FILE", seed.to_str().unwrap()),
            ("ACCESS_LOG", "errors"),
        ],
    );
    let port = server.port;
    let feed =
        |c: usize| format!("/api/v2/flux/clusters/c{c:06}.fleet.example.com/platform-components");
    let before: Vec<String> = (0..CLUSTERS)
        .map(|c| get(port, &feed(c), Some("t")).unwrap().1)
        .collect();
    let before = Arc::new(before);

    let done = Arc::new(AtomicUsize::new(0));
    let mut senders = Vec::new();
    for sender in 0..SENDERS {
        let done = done.clone();
        senders.push(std::thread::spawn(move || {
            for n in 0..EVENTS_PER_SENDER {
                // Cluster 0 gets 150 events (past the 100 kept); the rest spread over the fleet.
                let c = if n % 4 == 0 {
                    0
                } else {
                    (sender * 7919 + n * 31) % CLUSTERS
                };
                let event = helm_event(
                    "shared",
                    if n % 5 == 0 { "error" } else { "info" },
                    if n % 5 == 0 {
                        "UpgradeFailed"
                    } else {
                        "UpgradeSucceeded"
                    },
                    &format!("2026-08-20T{:02}:{:02}:{:02}Z", sender, n / 60 % 60, n % 60),
                    "1.0.0",
                );
                let (status, text) = request(
                    port,
                    "POST",
                    &format!("/api/v2/flux/clusters/c{c:06}.fleet.example.com/events"),
                    Some("t"),
                    Some(&event.to_string()),
                )
                .unwrap();
                assert_eq!(status, 202, "{text}");
            }
            done.fetch_add(1, Ordering::SeqCst);
        }));
    }
    let mut readers = Vec::new();
    for reader in 0..2 {
        let (done, before) = (done.clone(), before.clone());
        readers.push(std::thread::spawn(move || {
            let mut reads = 0;
            while done.load(Ordering::SeqCst) < SENDERS {
                let c = (reader * 131 + reads * 17) % CLUSTERS;
                let (status, body) = get(port, &feed(c), Some("t")).unwrap();
                assert_eq!(status, 200);
                assert_eq!(body, before[c], "feed of c{c:06} changed");
                reads += 1;
            }
            reads
        }));
    }
    for sender in senders {
        sender.join().unwrap();
    }
    let reads: usize = readers.into_iter().map(|r| r.join().unwrap()).sum();
    assert!(reads > 0);

    // Every answered event is committed: no wait for a flush.
    let conn = rusqlite::Connection::open(dir.path().join("inventory.db")).unwrap();
    let kept: i64 = conn
        .query_row(
            "SELECT count(*) FROM reported_events WHERE cluster_dns = 'c000000.fleet.example.com'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(kept, 100, "the last 100 events of the busiest cluster");
    let clusters: i64 = conn
        .query_row(
            "SELECT count(DISTINCT cluster_dns) FROM reported_objects",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(clusters > 100, "{clusters} clusters reported");
    for c in 0..CLUSTERS {
        assert_eq!(get(port, &feed(c), Some("t")).unwrap().1, before[c]);
    }
    let (status, fleet) = get(port, "/status/fleet", Some("t")).unwrap();
    assert_eq!(status, 200, "{fleet}");
    drop(server);
}

/// An operator on the box: `flux-inputs status` reads what a stopped server saved.
#[test]
fn the_status_command_summarises_and_lists_failures() {
    use crate::process::{Server, get, request};
    let dir = tempfile::tempdir().unwrap();
    let database = dir.path().join("inventory.db");
    let mut server = Server::ready(&database, &[("AUTH_TOKEN", "t")]);
    let (status, _) = get(
        server.port,
        &format!("/api/v2/flux/clusters/{QA}/platform-components"),
        Some("t"),
    )
    .unwrap();
    assert_eq!(status, 200);
    for event in [
        helm_event(
            "traefik",
            "error",
            "UpgradeFailed",
            "2026-08-20T10:00:00Z",
            "33.2.1",
        ),
        helm_event(
            "cert-manager",
            "info",
            "InstallSucceeded",
            "2026-08-20T10:00:00Z",
            "v1.16.2",
        ),
    ] {
        let (status, text) = request(
            server.port,
            "POST",
            &format!("/api/v2/flux/clusters/{QA}/events"),
            Some("t"),
            Some(&event.to_string()),
        )
        .unwrap();
        assert_eq!(status, 202, "{text}");
    }
    // SIGTERM saves poll times and pending events before exit.
    server.signal("-TERM");
    assert!(
        server
            .wait_exit(std::time::Duration::from_secs(10))
            .success()
    );

    let summary = crate::cli::run(&database, &["status"]);
    assert!(summary.status.success());
    let text = String::from_utf8_lossy(&summary.stdout).into_owned();
    let traefik_qa = text
        .lines()
        .skip_while(|l| !l.starts_with("traefik"))
        .find(|l| l.trim_start().starts_with("qa"))
        .unwrap_or_else(|| panic!("{text}"));
    let columns: Vec<&str> = traefik_qa.split_whitespace().collect();
    assert_eq!(columns, ["qa", "0", "0", "1", "0", "0", "0"], "{text}");
    assert!(text.contains("4 clusters, 3 stale"), "{text}");

    let failed = crate::cli::run(&database, &["status", "--state", "failed"]);
    let text = String::from_utf8_lossy(&failed.stdout).into_owned();
    let rows: Vec<&str> = text.lines().skip(1).collect();
    assert_eq!(rows.len(), 1, "{text}");
    assert!(rows[0].starts_with("edge-qa-01") && rows[0].contains("UpgradeFailed"));

    let json = crate::cli::run(
        &database,
        &["status", "--component", "cert-manager", "--json"],
    );
    let rows: Vec<Value> = String::from_utf8_lossy(&json.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 4);
    let qa = rows.iter().find(|r| r["cluster"] == "edge-qa-01").unwrap();
    assert_eq!(qa["state"], "converged");

    let unknown = crate::cli::run(&database, &["status", "--component", "nope"]);
    assert_eq!(unknown.status.code(), Some(3));
    let bad = crate::cli::run(&database, &["status", "--state", "sideways"]);
    assert_eq!(bad.status.code(), Some(2));
}

#[tokio::test]
async fn a_read_only_server_receives_events_too() {
    let app = TestApp::with(
        flux_inputs::config::ApiMode::ReadOnly,
        flux_inputs::config::SeedSource::Demo,
    );
    poll(&app, DEV).await;
    let event = helm_event(
        "podinfo",
        "info",
        "InstallSucceeded",
        "2026-08-20T10:00:00Z",
        "6.7.1",
    );
    accepted(&send(&app, DEV, READ, &event).await);
    assert_eq!(state(&app, "lab-dev-01", "podinfo").await, "converged");
}

/// When events cannot be saved (another process holds the write lock past the busy timeout),
/// each waiting request is answered `503` with `Retry-After`, nothing stays queued in memory,
/// and the next event after the lock is released is saved.
#[tokio::test]
async fn an_event_that_cannot_be_saved_is_a_503_and_is_not_kept() {
    let app = TestApp::new();
    let holder = rusqlite::Connection::open(app.store.path()).unwrap();
    holder
        .execute_batch("BEGIN IMMEDIATE; UPDATE hub_heartbeat SET at = at WHERE id = 1;")
        .unwrap();
    let event = helm_event(
        "traefik",
        "info",
        "UpgradeSucceeded",
        "2026-08-20T10:00:00Z",
        "1",
    );
    let answers =
        futures_util::future::join_all((0..8).map(|_| send(&app, DEV, READ, &event))).await;
    for answer in &answers {
        answer.expect_error(StatusCode::SERVICE_UNAVAILABLE, "service_unavailable");
        assert_eq!(answer.header("retry-after"), Some("1"));
    }
    assert_eq!(app.store.reports().waiting(), 0, "nothing kept in memory");
    holder.execute_batch("ROLLBACK").unwrap();
    let saved = helm_event(
        "traefik",
        "info",
        "UpgradeSucceeded",
        "2026-08-20T10:00:01Z",
        "1",
    );
    accepted(&send(&app, DEV, READ, &saved).await);
    let stored: i64 = holder
        .query_row(
            "SELECT count(*) FROM reported_events WHERE cluster_dns = ?1",
            [DEV],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(stored, 1, "only the event answered 202 is stored");
}

/// A success stamped in the future (a fast clock, or a forged 2099) counts as received now,
/// so the real failure that follows is seen at once.
#[tokio::test]
async fn a_future_timestamp_does_not_hide_the_failure_after_it() {
    let app = TestApp::new();
    poll(&app, DEV).await;
    let future = helm_event(
        "cert-manager",
        "info",
        "UpgradeSucceeded",
        "2099-01-01T00:00:00Z",
        "v1.16.2",
    );
    accepted(&send(&app, DEV, READ, &future).await);
    assert_eq!(state(&app, "lab-dev-01", "cert-manager").await, "converged");
    let now = flux_inputs::domain::report::format_timestamp(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64,
    );
    let failure = cert_manager_failure(&now);
    accepted(&send(&app, DEV, READ, &failure).await);
    assert_eq!(state(&app, "lab-dev-01", "cert-manager").await, "failed");
}

/// A cluster reporting more objects than are kept never pushes out the HelmRelease that
/// decides a component.
#[tokio::test]
async fn a_flood_of_objects_does_not_evict_the_failing_release() {
    let app = TestApp::new();
    poll(&app, DEV).await;
    let failure = cert_manager_failure("2026-08-20T10:00:00Z");
    accepted(&send(&app, DEV, READ, &failure).await);
    for n in 0..1010 {
        let event = json!({
            "involvedObject": {"kind": "Kustomization", "namespace": "apps", "name": format!("app-{n}")},
            "severity": "info", "timestamp": "2026-08-20T10:01:00Z",
            "message": "applied", "reason": "ReconciliationSucceeded",
        });
        accepted(&send(&app, DEV, READ, &event).await);
    }
    assert_eq!(state(&app, "lab-dev-01", "cert-manager").await, "failed");
    let objects: i64 = rusqlite::Connection::open(app.store.path())
        .unwrap()
        .query_row(
            "SELECT count(*) FROM reported_objects WHERE cluster_dns = ?1",
            [DEV],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(objects, 1000, "still bounded");
}

/// A second HelmRelease claiming a component through `metadata.component` cannot turn the
/// failure of the component's own release into `converged`: every claimant counts, the
/// worst wins.
#[tokio::test]
async fn a_second_release_claiming_a_component_cannot_hide_a_failure() {
    let app = TestApp::new();
    poll(&app, DEV).await;
    let failure = cert_manager_failure("2026-08-20T10:00:00Z");
    accepted(&send(&app, DEV, READ, &failure).await);
    let mut impostor = helm_event(
        "lookalike",
        "info",
        "UpgradeSucceeded",
        "2026-08-20T10:05:00Z",
        "v1.16.2",
    );
    impostor["metadata"]["component"] = json!("cert-manager");
    accepted(&send(&app, DEV, READ, &impostor).await);
    let status = component(&app, "lab-dev-01", "cert-manager").await;
    assert_eq!(status["state"], "failed", "{status}");
    assert_eq!(status["reason"], "UpgradeFailed");
}

/// A chart that cannot be pulled shows as a failure of the component (with the source's
/// reason) until its HelmRelease reports a success at the desired version.
#[tokio::test]
async fn a_failing_chart_source_fails_the_component() {
    let app = TestApp::new();
    poll(&app, DEV).await;
    let desired = component(&app, "lab-dev-01", "cert-manager").await["desired_version"]
        .as_str()
        .unwrap()
        .to_owned();
    let pull = json!({
        "involvedObject": {"kind": "OCIRepository", "namespace": "flux-system", "name": "cert-manager",
                           "apiVersion": "source.toolkit.fluxcd.io/v1"},
        "severity": "error", "timestamp": "2026-08-20T10:00:00Z",
        "message": "failed to pull artifact: manifest unknown", "reason": "OCIPullFailed",
        "metadata": {"component": "cert-manager"}, "reportingController": "source-controller",
    });
    accepted(&send(&app, DEV, READ, &pull).await);
    let status = component(&app, "lab-dev-01", "cert-manager").await;
    assert_eq!(status["state"], "failed", "{status}");
    assert_eq!(status["reason"], "OCIPullFailed");
    assert!(
        status["message"]
            .as_str()
            .unwrap()
            .contains("manifest unknown")
    );
    let fixed = helm_event(
        "cert-manager",
        "info",
        "UpgradeSucceeded",
        "2026-08-20T10:10:00Z",
        &desired,
    );
    accepted(&send(&app, DEV, READ, &fixed).await);
    assert_eq!(state(&app, "lab-dev-01", "cert-manager").await, "converged");
}

/// Event text reaches terminals and the console: escape sequences and bidirectional
/// overrides are refused (400, the event alone), line breaks in a message are kept.
#[tokio::test]
async fn events_with_terminal_sequences_are_refused() {
    let app = TestApp::new();
    let mut bad = helm_event(
        "cert-manager",
        "error",
        "Upgrade\u{1b}[2JFailed",
        "2026-08-20T10:00:00Z",
        "1",
    );
    let message = send(&app, DEV, READ, &bad)
        .await
        .expect_error(StatusCode::BAD_REQUEST, "bad_request");
    assert!(
        message.contains("reason") && message.contains("U+001B"),
        "{message}"
    );
    bad["reason"] = json!("UpgradeFailed");
    bad["message"] = json!("evil \u{202e}txt.exe");
    send(&app, DEV, READ, &bad)
        .await
        .expect_error(StatusCode::BAD_REQUEST, "bad_request");
    bad["message"] = json!("Helm upgrade failed:\n  line two\n\tindented");
    accepted(&send(&app, DEV, READ, &bad).await);
}

/// Like every JSON route, the events route refuses a body declared as something else.
#[tokio::test]
async fn an_event_that_is_not_declared_json_is_415() {
    let app = TestApp::new();
    let event = helm_event(
        "cert-manager",
        "info",
        "UpgradeSucceeded",
        "2026-08-20T10:00:00Z",
        "1",
    );
    let answer = crate::helpers::answer(
        app.client
            .post(format!("/api/v2/flux/clusters/{DEV}/events"))
            .header("Authorization", format!("Bearer {READ}"))
            .content_type("text/plain")
            .body(event.to_string())
            .send()
            .await
            .0,
    )
    .await;
    assert_eq!(answer.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(answer.json["error"], "bad_request");
}

/// Clusters of `component` in `state`, as `/status/fleet` counts them.
fn fleet_count(fleet: &Value, component: &str, state: &str) -> u64 {
    fleet["components"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["component"] == component)
        .map_or(0, |c| c["counts"][state].as_u64().unwrap())
}

/// The unfiltered `/status/fleet` and `/metrics` share one summary kept between requests (at
/// 100,000 clusters it reads 3 million assignments): every change it counts must show at
/// once — a report, a poll that makes a cluster fresh, an inventory write, a cluster going
/// stale as time passes, another process's write.
#[tokio::test]
async fn the_kept_fleet_summary_shows_every_change_at_once() {
    let app = TestApp::new();
    let first = app.get("/status/fleet").await.json;
    assert_eq!(first["stale_count"], 4, "nobody polled yet");
    assert_eq!(
        app.get("/status/fleet").await.json,
        first,
        "nothing changed"
    );

    poll(&app, DEV).await;
    let polled = app.get("/status/fleet").await.json;
    assert_eq!(polled["stale_count"], 3, "a poll makes lab-dev-01 fresh");
    let failed = fleet_count(&polled, "cert-manager", "failed");

    let event = cert_manager_failure("2026-08-20T10:00:00Z");
    accepted(&send(&app, DEV, READ, &event).await);
    let reported = app.get("/status/fleet").await.json;
    assert_eq!(fleet_count(&reported, "cert-manager", "failed"), failed + 1);
    let metrics = String::from_utf8(app.get("/metrics").await.bytes).unwrap();
    assert!(
        metrics.contains("flux_inputs_clusters_stale 3\n"),
        "{metrics}"
    );
    assert!(metrics.contains(&format!(
        "flux_inputs_component_clusters{{component=\"cert-manager\",state=\"failed\"}} {}\n",
        failed + 1
    )));

    let deleted = app.delete("/clusters/edge-prod-01").await;
    assert_eq!(deleted.status, StatusCode::OK, "{}", deleted.json);
    let written = app.get("/status/fleet").await.json;
    assert_eq!(
        (
            written["clusters"].as_u64(),
            written["stale_count"].as_u64()
        ),
        (Some(3), Some(2))
    );

    // Another process clears what was reported; the server's watcher notices such commits
    // and drops what it keeps (`forget_cached`).
    rusqlite::Connection::open(app.store.path())
        .unwrap()
        .execute("DELETE FROM reported_objects", [])
        .unwrap();
    app.store.forget_cached();
    let outside = app.get("/status/fleet").await.json;
    assert_eq!(fleet_count(&outside, "cert-manager", "failed"), failed);

    app.store.clock().advance(1801);
    let later = app.get("/status/fleet").await.json;
    assert_eq!(
        later["stale_count"], 3,
        "lab-dev-01's last poll is 1801 s old"
    );
}

/// The whole fleet's summary is kept up to date by what each write and event batch names
/// (clusters, components retagged in the catalog, DNS names reported from) rather than read
/// afresh: after every kind of change it must equal a summary read afresh from the file.
#[tokio::test]
async fn the_kept_fleet_summary_equals_a_fresh_read_after_every_kind_of_change() {
    use poem_openapi::types::ToJSON;
    let app = TestApp::new();
    let fresh = || {
        let conn = rusqlite::Connection::open(app.store.path()).unwrap();
        let now = app.store.clock().now_u64();
        let scope = flux_inputs::store::convergence::Scope::default();
        flux_inputs::store::summary::fleet_summary(&conn, &scope, app.store.polls(), now)
            .unwrap()
            .to_json()
            .unwrap()
    };
    let kept = || async { app.get("/status/fleet").await.json };
    poll(&app, DEV).await;
    assert_eq!(kept().await, fresh(), "the first summary");

    let success = helm_event(
        "cert-manager",
        "info",
        "UpgradeSucceeded",
        "2026-08-20T10:00:00Z",
        "v1.16.2",
    );
    accepted(&send(&app, DEV, READ, &success).await);
    let reported = kept().await;
    assert_eq!(reported, fresh(), "after an event");
    let converged = fleet_count(&reported, "cert-manager", "converged");
    assert!(converged >= 1, "{reported}");

    // A new catalog tag: the cluster that reported the old one is progressing again.
    let mut entry = app.get("/platform_components/cert-manager").await.json;
    entry["oci_tag"] = json!("v1.17.0");
    let put = app.put("/platform_components/cert-manager", &entry).await;
    assert_eq!(put.status, StatusCode::OK, "{}", put.json);
    let retagged = kept().await;
    assert_eq!(retagged, fresh(), "after a catalog tag change");
    assert_eq!(
        fleet_count(&retagged, "cert-manager", "converged"),
        converged - 1
    );

    let mut cluster = app.get("/clusters/lab-dev-01").await.json;
    for entry in cluster["platform_components"].as_array_mut().unwrap() {
        if entry["id"] == "cert-manager" {
            entry["enabled"] = json!(false);
        }
    }
    let put = app.put("/clusters/lab-dev-01", &cluster).await;
    assert_eq!(put.status, StatusCode::OK, "{}", put.json);
    let disabled = kept().await;
    assert_eq!(disabled, fresh(), "after a cluster write");
    assert!(fleet_count(&disabled, "cert-manager", "disabled") >= 1);

    let overlay = json!({"id": "dev-extra", "selector": {"environment": "dev"},
                         "platform_components": [{"id": "podinfo", "enabled": true}]});
    let created = app.post("/overlays", &overlay).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.json);
    assert_eq!(kept().await, fresh(), "after an overlay write");

    let mut copy = app.get("/clusters/edge-qa-01").await.json;
    copy["id"] = json!("edge-qa-02");
    copy["cluster_name"] = json!("edge-qa-02");
    copy["cluster_dns"] = json!("edge-qa-02.k8s.example.com");
    let created = app.post("/clusters", &copy).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.json);
    let grown = kept().await;
    assert_eq!(grown, fresh(), "after a cluster is created");
    assert_eq!(grown["clusters"], 5);

    let deleted = app.delete("/clusters/edge-qa-01").await;
    assert_eq!(deleted.status, StatusCode::OK, "{}", deleted.json);
    assert_eq!(kept().await, fresh(), "after a cluster is deleted");
}
