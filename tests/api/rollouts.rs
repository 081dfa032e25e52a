//! Progressive rollouts (README, "Progressive rollouts"), driven over HTTP with the controller run on a clock
//! of the test's own (`controller::advance_rollouts(store, now)`), and events posted as
//! notification-controller posts them.

use std::time::{SystemTime, UNIX_EPOCH};

use poem::http::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{READ, TestApp, WRITE};
use flux_inputs::config::SeedSource;

pub const COMPONENT: &str = "cert-manager";
pub const OLD: &str = "v1.16.2";
pub const NEW: &str = "v1.17.0";

pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// A cluster of the test fleet.
pub struct Member {
    pub id: String,
    pub environment: &'static str,
    pub labels: Value,
    /// Its own `oci_tag` for the component.
    pub pinned: Option<&'static str>,
}

pub fn member(id: &str, environment: &'static str) -> Member {
    Member {
        id: id.into(),
        environment,
        labels: json!({}),
        pinned: None,
    }
}

pub fn dns(id: &str) -> String {
    format!("{id}.k8s.example.com")
}

/// The demo catalog plus these clusters, each using only cert-manager.
pub async fn fleet(members: &[Member]) -> TestApp {
    let app = TestApp::configured(|config| config.seed = SeedSource::Demo);
    for m in members {
        let body = json!({
            "id": m.id, "cluster_name": m.id, "cluster_dns": dns(&m.id),
            "environment": m.environment, "labels": m.labels,
            "platform_components": [{"id": COMPONENT, "enabled": true, "oci_tag": m.pinned,
                                     "component_path": null}]
        });
        let created = app.post("/clusters", &body).await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.json);
    }
    app
}

/// The cluster polls its platform-components feed (so it is not stale); returns its tag.
pub async fn poll(app: &TestApp, id: &str) -> String {
    let feed = app
        .get(&format!(
            "/api/v2/flux/clusters/{}/platform-components",
            dns(id)
        ))
        .await;
    assert_eq!(feed.status, StatusCode::OK);
    feed.json["inputs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["id"] == COMPONENT)
        .map(|i| i["source"]["oci_tag"].as_str().unwrap().to_owned())
        .unwrap_or_default()
}

/// The tag the cluster's feed gives the component.
pub async fn feed_tag(app: &TestApp, id: &str) -> String {
    poll(app, id).await
}

/// Every feed of every cluster, read from the store (so no cluster counts as having polled).
pub async fn fingerprint(app: &TestApp) -> Vec<(String, Vec<u8>)> {
    use flux_inputs::store::feeds::Feed;
    let mut all = Vec::new();
    let clusters = app.get("/clusters").await.json;
    for cluster in clusters.as_array().unwrap() {
        let dns = cluster["cluster_dns"].as_str().unwrap();
        for feed in Feed::ALL {
            let bytes = app.store.feed(dns, feed).await.unwrap();
            all.push((format!("{dns} {}", feed.segment()), bytes));
        }
    }
    all
}

/// helm-controller's event for the component's HelmRelease on `id`.
pub async fn report(app: &TestApp, id: &str, reason: &str, revision: &str) {
    let severity = if reason.ends_with("Failed") {
        "error"
    } else {
        "info"
    };
    let event = json!({
        "involvedObject": {"kind": "HelmRelease", "namespace": "flux-system", "name": COMPONENT,
                           "uid": "7d2f", "apiVersion": "helm.toolkit.fluxcd.io/v2"},
        "severity": severity,
        "timestamp": flux_inputs::domain::report::format_timestamp(now()),
        "message": format!("Helm {reason} for release cert-manager/cert-manager with chart cert-manager@{revision}"),
        "reason": reason,
        "metadata": {"component": COMPONENT, "revision": revision},
        "reportingController": "helm-controller"
    });
    let answer = app
        .call(
            Method::POST,
            &format!("/api/v2/flux/clusters/{}/events", dns(id)),
            Some(READ),
            Some(&event),
        )
        .await;
    assert_eq!(answer.status, StatusCode::ACCEPTED, "{}", answer.json);
}

pub async fn rollout(app: &TestApp, id: &str) -> Value {
    let answer = app.get(&format!("/rollouts/{id}")).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.json);
    answer.json
}

/// Ids of the rollout's clusters in this state.
pub fn in_state(rollout: &Value, state: &str) -> Vec<String> {
    let mut ids = Vec::new();
    for step in rollout["steps"].as_array().unwrap() {
        for c in step["clusters"].as_array().unwrap() {
            if c["state"] == state {
                ids.push(c["id"].as_str().unwrap().to_owned());
            }
        }
    }
    ids
}

/// The cluster's entry in a step of the rollout.
pub fn cluster_of<'a>(rollout: &'a Value, id: &str) -> &'a Value {
    rollout["steps"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["clusters"].as_array().unwrap())
        .find(|c| c["id"] == id)
        .unwrap_or_else(|| panic!("{id} in {rollout}"))
}

pub async fn verb(app: &TestApp, id: &str, verb: &str) -> crate::helpers::Answer {
    app.call(
        Method::POST,
        &format!("/rollouts/{id}/{verb}"),
        Some(WRITE),
        None,
    )
    .await
}

/// Runs the controller at `*t`, then moves the clock on by `step` seconds.
pub async fn tick(app: &TestApp, t: &mut i64, step: i64) {
    flux_inputs::controller::advance_rollouts(&app.store, *t)
        .await
        .expect("controller runs");
    *t += step;
}

fn spec(id: &str, waves: Value) -> Value {
    json!({
        "id": id, "component": COMPONENT,
        "target": {"oci_tag": NEW},
        "waves": waves, "gate": "reported", "bake_seconds": 5, "wave_timeout_seconds": 60,
        "max_failures": 0, "on_failure": "pause"
    })
}

/// dev ×2, a canary in prod, qa, prod ×3 (batches of 2), an unselected uat cluster, a
/// pinned prod cluster and a prod cluster that never polls.
fn demo_fleet() -> Vec<Member> {
    let mut members = vec![
        member("dev-1", "dev"),
        member("dev-2", "dev"),
        member("prod-canary", "prod"),
        member("qa-1", "qa"),
        member("prod-1", "prod"),
        member("prod-2", "prod"),
        member("prod-3", "prod"),
        member("uat-1", "uat"),
        member("prod-pinned", "prod"),
        member("prod-stale", "prod"),
    ];
    members[2].labels = json!({"canary": "true"});
    members[8].pinned = Some("v1.15.0");
    members
}

fn waves() -> Value {
    json!([{"environment": "dev"}, {"labels": {"canary": "true"}}, {"environment": "qa"},
           {"environment": "prod", "batch": 2}])
}

/// Every cluster of the test fleet except `prod-stale` polls.
async fn poll_all(app: &TestApp) {
    for m in demo_fleet() {
        if m.id != "prod-stale" {
            poll(app, &m.id).await;
        }
    }
}

/// Ids of the demo clusters using cert-manager (they are in the fleet too).
const DEMO_USERS: [&str; 4] = ["edge-prod-01", "edge-prod-02", "edge-qa-01", "lab-dev-01"];

#[tokio::test]
async fn a_dry_run_plans_waves_batches_pinned_unselected_and_stale_and_stores_nothing() {
    let app = fleet(&demo_fleet()).await;
    poll_all(&app).await;
    let plan = app
        .post("/rollouts?dry_run=true", &spec("cm", waves()))
        .await;
    assert_eq!(plan.status, StatusCode::OK, "{}", plan.json);
    let steps: Vec<Vec<&str>> = plan.json["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            s["clusters"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c["id"].as_str().unwrap())
                .collect()
        })
        .collect();
    assert_eq!(
        steps,
        vec![
            vec!["dev-1", "dev-2", "lab-dev-01"],
            vec!["prod-canary"],
            vec!["edge-qa-01", "qa-1"],
            vec!["edge-prod-02", "prod-1"],
            vec!["prod-2", "prod-3"],
            vec!["prod-stale"],
        ]
    );
    let waves_of: Vec<u64> = plan.json["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["wave"].as_u64().unwrap())
        .collect();
    assert_eq!(waves_of, vec![0, 1, 2, 3, 3, 3]);
    let aside: Vec<(&str, &str)> = plan.json["not_in_steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["id"].as_str().unwrap(), c["state"].as_str().unwrap()))
        .collect();
    assert_eq!(
        aside,
        vec![
            ("edge-prod-01", "pinned"),
            ("prod-pinned", "pinned"),
            ("uat-1", "unselected")
        ]
    );
    // The demo clusters never polled in this test either.
    let mut stale: Vec<&str> = plan.json["stale"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    stale.sort();
    assert_eq!(
        stale,
        vec!["edge-prod-02", "edge-qa-01", "lab-dev-01", "prod-stale"]
    );
    assert_eq!(plan.json["state"], "planned");
    assert_eq!(plan.json["counts"]["pending"], 11);
    // Nothing stored.
    let listed = app.get("/rollouts").await;
    assert_eq!(listed.json, json!([]));
    app.get("/rollouts/cm")
        .await
        .expect_error(StatusCode::NOT_FOUND, "not_found");
}

#[tokio::test]
async fn a_clean_rollout_moves_wave_by_wave_and_promotes_without_changing_a_feed() {
    let app = fleet(&demo_fleet()).await;
    for id in DEMO_USERS {
        // The demo clusters poll too, so they are moved (edge-prod-01 pins its own tag).
        poll(&app, id).await;
    }
    poll_all(&app).await;
    let created = app.post("/rollouts", &spec("cm", waves())).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.json);
    assert_eq!(created.header("Location"), Some("/rollouts/cm"));
    let mut t = now();
    // Planned: the controller leaves it alone.
    tick(&app, &mut t, 1).await;
    assert_eq!(feed_tag(&app, "dev-1").await, OLD);
    let started = verb(&app, "cm", "start").await;
    assert_eq!(started.status, StatusCode::OK, "{}", started.json);
    assert_eq!(started.json["state"], "running");

    // Step 0 (dev): only dev clusters move.
    tick(&app, &mut t, 1).await;
    let r = rollout(&app, "cm").await;
    assert_eq!(r["current_step"], 0);
    assert_eq!(
        in_state(&r, "progressing"),
        vec!["dev-1", "dev-2", "lab-dev-01"]
    );
    assert_eq!(feed_tag(&app, "dev-1").await, NEW);
    assert_eq!(feed_tag(&app, "prod-canary").await, OLD);
    // Not converged yet: waiting at the gate however often the controller looks.
    tick(&app, &mut t, 1).await;
    assert_eq!(rollout(&app, "cm").await["steps"][0]["state"], "waiting");
    // A success for the old version is not the target.
    report(&app, "dev-1", "UpgradeSucceeded", OLD).await;
    tick(&app, &mut t, 1).await;
    assert_eq!(in_state(&rollout(&app, "cm").await, "progressing").len(), 3);
    for id in ["dev-1", "dev-2", "lab-dev-01"] {
        report(&app, id, "UpgradeSucceeded", &format!("{NEW}+0123456789ab")).await;
    }
    tick(&app, &mut t, 1).await;
    let r = rollout(&app, "cm").await;
    assert_eq!(r["steps"][0]["state"], "baking");
    // Baking: the next step waits bake_seconds.
    tick(&app, &mut t, 1).await;
    assert_eq!(feed_tag(&app, "prod-canary").await, OLD);
    t += 5;
    tick(&app, &mut t, 1).await;
    let r = rollout(&app, "cm").await;
    assert_eq!(r["steps"][0]["state"], "passed");
    assert_eq!(r["current_step"], 1);
    assert_eq!(feed_tag(&app, "prod-canary").await, NEW);
    assert_eq!(feed_tag(&app, "prod-1").await, OLD);

    // The rest, with a look at the feeds right before and after the promotion.
    let mut before_promotion = None;
    for _ in 0..60 {
        let current = rollout(&app, "cm").await;
        if current["state"] != "running" {
            break;
        }
        for cluster in in_state(&current, "progressing") {
            report(&app, &cluster, "UpgradeSucceeded", NEW).await;
        }
        before_promotion = Some(fingerprint(&app).await);
        tick(&app, &mut t, 3).await;
    }
    let r = rollout(&app, "cm").await;
    assert_eq!(r["state"], "succeeded", "{r}");
    assert!(
        fingerprint(&app).await == before_promotion.unwrap(),
        "promotion changes no feed"
    );

    // Every moved cluster runs the target from the catalog; the others kept their values.
    let catalog = app.get("/platform_components/cert-manager").await.json;
    assert_eq!(catalog["oci_tag"], NEW);
    for id in ["dev-1", "prod-canary", "qa-1", "prod-3", "edge-prod-02"] {
        let cluster = app.get(&format!("/clusters/{id}")).await.json;
        assert_eq!(
            cluster["platform_components"][0]["oci_tag"],
            Value::Null,
            "{id}"
        );
        assert_eq!(feed_tag(&app, id).await, NEW, "{id}");
    }
    for (id, tag) in [
        ("uat-1", OLD),
        ("prod-stale", OLD),
        ("prod-pinned", "v1.15.0"),
        ("edge-prod-01", "v1.15.4"),
    ] {
        assert_eq!(feed_tag(&app, id).await, tag, "{id}");
    }
    let kept: Vec<(&str, &str)> = r["kept_previous"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| {
            (
                k["cluster"].as_str().unwrap(),
                k["oci_tag"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(kept, vec![("prod-stale", OLD), ("uat-1", OLD)]);
    assert_eq!(in_state(&r, "skipped"), vec!["prod-stale"]);
    assert_eq!(r["stale"], json!(["prod-stale"]));
    let reasons: Vec<&str> = r["transitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["reason"].as_str().unwrap())
        .collect();
    assert!(
        reasons[0].starts_with("planned: 6 step(s) moving 11 cluster(s)"),
        "{reasons:?}"
    );
    assert!(
        reasons
            .iter()
            .any(|r| r.starts_with("step 5 (wave 3) started: 0 cluster(s)")),
        "{reasons:?}"
    );
    assert!(
        reasons.last().unwrap().starts_with("promoted:"),
        "{reasons:?}"
    );

    // One audited write per step and one for the promotion, all by the rollout: each names
    // the component and the clusters whose entry it changed, not every cluster whole.
    let audit = app
        .call(Method::GET, "/audit?since_revision=0", Some(WRITE), None)
        .await
        .json;
    let by_rollout: Vec<&Value> = audit
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["actor"] == "rollout:cm")
        .collect();
    assert!(by_rollout.iter().all(|e| e["kind"] != "clusters"));
    for id in ["dev-1", "qa-1", "prod-3"] {
        let writes = by_rollout
            .iter()
            .filter(|e| e["kind"] == "cluster_components" && e["after"].get(id).is_some())
            .count();
        assert_eq!(writes, 2, "{id}: its step and the promotion");
        // A cluster's history finds them.
        let history = app
            .call(Method::GET, &format!("/audit?id={id}"), Some(WRITE), None)
            .await
            .json;
        let found = history
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["actor"] == "rollout:cm")
            .count();
        assert_eq!(found, 2, "{id}: {history}");
    }
    assert_eq!(
        by_rollout
            .iter()
            .filter(|e| e["kind"] == "platform_components")
            .count(),
        1
    );
}

/// `POST /audit/{revision}/revert` with the write token.
async fn revert(app: &TestApp, revision: impl std::fmt::Display) -> crate::helpers::Answer {
    app.call(
        Method::POST,
        &format!("/audit/{revision}/revert"),
        Some(WRITE),
        None,
    )
    .await
}

#[tokio::test]
async fn a_steps_write_is_one_audit_entry_that_moves_etags_and_reverts_exactly() {
    let app = fleet(&demo_fleet()).await;
    let patched = app
        .put(
            "/clusters/dev-1",
            &json!({"patches": {COMPONENT: {"replicas": 2}}}),
        )
        .await;
    assert_eq!(patched.status, StatusCode::OK, "{}", patched.json);
    poll_all(&app).await;
    let dev1 = app.get("/clusters/dev-1").await;
    let etag = dev1.header("etag").unwrap().to_owned();
    let before = fingerprint(&app).await;
    app.post("/rollouts", &spec("cm", waves())).await;
    verb(&app, "cm", "start").await;
    let mut t = now();
    tick(&app, &mut t, 1).await;
    assert_eq!(feed_tag(&app, "dev-1").await, NEW);
    assert_eq!(verb(&app, "cm", "abort").await.json["state"], "aborted");

    // The step moved dev-1: its ETag moved, so an edit based on the old one is refused.
    let moved = app.get("/clusters/dev-1").await;
    assert_ne!(moved.header("etag").unwrap(), etag);
    assert_eq!(moved.json["patches"], dev1.json["patches"], "patch kept");
    let stale = app
        .raw(
            Method::PUT,
            "/clusters/dev-1",
            &[
                ("Authorization", "Bearer write-token"),
                ("If-Match", &etag),
                ("Content-Type", "application/json"),
            ],
            br#"{"node_count": 3}"#.to_vec(),
        )
        .await;
    stale.expect_error(StatusCode::PRECONDITION_FAILED, "precondition_failed");

    let entries = app
        .call(
            Method::GET,
            "/audit?kind=cluster_components",
            Some(WRITE),
            None,
        )
        .await
        .json;
    let step = &entries.as_array().unwrap()[0];
    assert_eq!(step["id"], COMPONENT);
    assert_eq!(step["actor"], "rollout:cm");
    let moved_ids: Vec<&String> = step["after"].as_object().unwrap().keys().collect();
    assert_eq!(moved_ids, ["dev-1", "dev-2"], "{step}");
    assert_eq!(step["before"]["dev-1"]["oci_tag"], Value::Null);
    assert_eq!(step["after"]["dev-1"]["oci_tag"], NEW);
    assert_eq!(
        moved.header("etag").unwrap(),
        format!("\"{}\"", step["revision"])
    );

    // Reverting it puts every feed back byte for byte, and the revert reverts too.
    let revision = step["revision"].as_i64().unwrap();
    let reverted = revert(&app, revision).await;
    assert_eq!(reverted.status, StatusCode::OK, "{}", reverted.json);
    assert_eq!(reverted.json["kind"], "cluster_components");
    assert!(fingerprint(&app).await == before, "every feed as before");
    assert_eq!(app.get("/clusters/dev-1").await.json, dev1.json);
    let again = revert(&app, &reverted.json["revision"]).await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.json);
    assert_eq!(feed_tag(&app, "dev-2").await, NEW);

    // A cluster deleted since is left out and named; an entry with nothing left to undo is a
    // conflict, not an empty write.
    app.call(Method::DELETE, "/clusters/dev-2", Some(WRITE), None)
        .await;
    let partial = revert(&app, revision).await;
    assert_eq!(partial.status, StatusCode::OK, "{}", partial.json);
    assert!(
        partial
            .header("warning")
            .is_some_and(|w| w.contains("dev-2")),
        "{:?}",
        partial.headers
    );
    assert_eq!(feed_tag(&app, "dev-1").await, OLD);
    revert(&app, revision)
        .await
        .expect_error(StatusCode::CONFLICT, "conflict");
}

#[tokio::test]
async fn a_failure_in_wave_two_pauses_until_resumed_and_a_timeout_counts_as_failure() {
    let app = fleet(&demo_fleet()).await;
    poll_all(&app).await;
    app.post("/rollouts", &spec("cm", waves())).await;
    verb(&app, "cm", "start").await;
    let mut t = now();
    tick(&app, &mut t, 1).await;
    for id in ["dev-1", "dev-2"] {
        report(&app, id, "UpgradeSucceeded", NEW).await;
    }
    tick(&app, &mut t, 6).await;
    tick(&app, &mut t, 1).await;
    let r = rollout(&app, "cm").await;
    assert_eq!(r["current_step"], 1, "{r}");
    // The canary fails.
    report(&app, "prod-canary", "UpgradeFailed", NEW).await;
    tick(&app, &mut t, 1).await;
    let r = rollout(&app, "cm").await;
    assert_eq!(r["state"], "paused", "{r}");
    let failed = &r["steps"][1]["clusters"][0];
    assert_eq!(failed["state"], "failed");
    assert_eq!(failed["reason"], "UpgradeFailed");
    let last = r["transitions"].as_array().unwrap().last().unwrap();
    assert!(
        last["reason"].as_str().unwrap().contains(
            "1 failure(s) in step 1, more than max_failures 0: prod-canary (UpgradeFailed)"
        ),
        "{last}"
    );
    let metrics = String::from_utf8(app.get("/metrics").await.bytes).unwrap();
    for line in [
        "flux_inputs_rollouts{state=\"paused\"} 1",
        "flux_inputs_rollouts{state=\"running\"} 0",
        "flux_inputs_rollout_current_step{rollout=\"cm\"} 1",
        "flux_inputs_rollout_clusters{rollout=\"cm\",state=\"failed\"} 1",
        "flux_inputs_rollout_clusters{rollout=\"cm\",state=\"passed\"} 2",
    ] {
        assert!(metrics.contains(line), "{line} in\n{metrics}");
    }
    // Paused: nothing moves, however long.
    t += 600;
    tick(&app, &mut t, 1).await;
    assert_eq!(feed_tag(&app, "qa-1").await, OLD);
    // Verbs that do not apply to a paused rollout.
    verb(&app, "cm", "start")
        .await
        .expect_error(StatusCode::CONFLICT, "conflict");
    verb(&app, "cm", "pause")
        .await
        .expect_error(StatusCode::CONFLICT, "conflict");
    // Resumed while still failing: paused again.
    assert_eq!(verb(&app, "cm", "resume").await.json["state"], "running");
    tick(&app, &mut t, 1).await;
    assert_eq!(rollout(&app, "cm").await["state"], "paused");
    // helm-controller's retry works; resumed, the rollout goes on.
    report(&app, "prod-canary", "UpgradeSucceeded", NEW).await;
    verb(&app, "cm", "resume").await;
    tick(&app, &mut t, 6).await;
    tick(&app, &mut t, 1).await;
    let r = rollout(&app, "cm").await;
    assert_eq!(r["current_step"], 2, "{r}");
    assert_eq!(feed_tag(&app, "qa-1").await, NEW);

    // qa-1 never reports: after wave_timeout_seconds it is a failure too.
    t += 61;
    tick(&app, &mut t, 1).await;
    let r = rollout(&app, "cm").await;
    assert_eq!(r["state"], "paused");
    assert_eq!(cluster_of(&r, "qa-1")["reason"], "Timeout");

    // Rolled back by hand: every moved cluster gets its previous values back.
    let rolled = verb(&app, "cm", "rollback").await;
    assert_eq!(rolled.json["state"], "rolled_back", "{}", rolled.json);
    for id in ["dev-1", "dev-2", "prod-canary", "qa-1"] {
        assert_eq!(feed_tag(&app, id).await, OLD, "{id}");
        let cluster = app.get(&format!("/clusters/{id}")).await.json;
        assert_eq!(cluster["platform_components"][0]["oci_tag"], Value::Null);
    }
    assert_eq!(
        in_state(&rolled.json, "rolled_back"),
        vec!["dev-1", "dev-2", "prod-canary", "qa-1"]
    );
    verb(&app, "cm", "resume")
        .await
        .expect_error(StatusCode::CONFLICT, "conflict");
}

#[tokio::test]
async fn on_failure_rollback_restores_every_cluster_it_changed_and_keeps_hand_edits() {
    let mut members = demo_fleet();
    // dev-2 pins its own path: a rollback restores exactly that.
    members[1].pinned = None;
    let app = fleet(&members).await;
    app.put(
        "/clusters/dev-2",
        &json!({"platform_components": [{"id": COMPONENT, "enabled": true, "oci_tag": null,
                                          "component_path": "charts/cert-manager"}]}),
    )
    .await;
    poll_all(&app).await;
    let mut body = spec(
        "cm",
        json!([{"environment": "dev"}, {"labels": {"canary": "true"}}, {"environment": "qa"},
               {"environment": "prod", "batch": 3}]),
    );
    body["on_failure"] = json!("rollback");
    body["target"]["component_path"] = json!("cert-manager-v2");
    body["max_failures"] = json!(1);
    let created = app.post("/rollouts", &body).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.json);
    let before = fingerprint(&app).await;
    verb(&app, "cm", "start").await;
    let mut t = now();
    tick(&app, &mut t, 1).await;
    let dev2 = app.get("/clusters/dev-2").await.json;
    assert_eq!(
        dev2["platform_components"][0]["component_path"],
        "cert-manager-v2"
    );
    for id in ["dev-1", "dev-2"] {
        report(&app, id, "UpgradeSucceeded", NEW).await;
    }
    tick(&app, &mut t, 6).await;
    tick(&app, &mut t, 1).await;
    report(&app, "prod-canary", "UpgradeSucceeded", NEW).await;
    tick(&app, &mut t, 6).await;
    tick(&app, &mut t, 1).await;
    let r = rollout(&app, "cm").await;
    assert_eq!(r["current_step"], 2, "{r}");
    // Someone edits qa-1 by hand while it is in the rollout: it keeps the edit.
    app.put(
        "/clusters/qa-1",
        &json!({"platform_components": [{"id": COMPONENT, "enabled": true, "oci_tag": "v1.17.1",
                                          "component_path": null}]}),
    )
    .await;
    tick(&app, &mut t, 1).await;
    let r = rollout(&app, "cm").await;
    assert_eq!(cluster_of(&r, "qa-1")["state"], "pinned", "{r}");
    assert_eq!(
        r["steps"][2]["state"], "baking",
        "a pinned cluster no longer holds the gate"
    );
    tick(&app, &mut t, 6).await;
    tick(&app, &mut t, 1).await;
    // Two failures in the first prod batch, more than max_failures (1).
    let r = rollout(&app, "cm").await;
    assert_eq!(r["current_step"], 3, "{r}");
    report(&app, "prod-1", "UpgradeFailed", NEW).await;
    tick(&app, &mut t, 1).await;
    assert_eq!(
        rollout(&app, "cm").await["state"],
        "running",
        "one failure is tolerated"
    );
    report(&app, "prod-2", "InstallFailed", NEW).await;
    tick(&app, &mut t, 1).await;
    let r = rollout(&app, "cm").await;
    assert_eq!(r["state"], "rolled_back", "{r}");
    // Every feed is as before the rollout, except qa-1's hand edit.
    let after = fingerprint(&app).await;
    assert_eq!(before.len(), after.len());
    for ((path, was), (_, is)) in before.iter().zip(&after) {
        if path.starts_with("qa-1.") && path.ends_with("platform-components") {
            assert_ne!(was, is);
        } else {
            assert_eq!(was, is, "{path}");
        }
    }
    let dev2 = app.get("/clusters/dev-2").await.json;
    assert_eq!(
        dev2["platform_components"][0]["component_path"],
        "charts/cert-manager"
    );
    assert_eq!(feed_tag(&app, "qa-1").await, "v1.17.1");
    let catalog = app.get("/platform_components/cert-manager").await.json;
    assert_eq!(catalog["oci_tag"], OLD);
    assert!(
        r["transitions"].as_array().unwrap().last().unwrap()["reason"]
            .as_str()
            .unwrap()
            .starts_with(
                "rolled back: 5 cluster(s) got their previous values back; 2 failure(s) in step 3"
            ),
        "{}",
        r["transitions"]
    );
}

#[tokio::test]
async fn the_polled_gate_waits_for_a_poll_after_the_step_started() {
    let app = fleet(&[member("a", "dev"), member("b", "qa")]).await;
    poll(&app, "a").await;
    poll(&app, "b").await;
    let mut body = spec("cm", json!([{"environment": "dev"}, {"environment": "qa"}]));
    body["gate"] = json!("polled");
    body["bake_seconds"] = json!(0);
    body["target"]["component_version"] = json!("v1.17.0");
    app.post("/rollouts", &body).await;
    verb(&app, "cm", "start").await;
    flux_inputs::controller::advance_rollouts(&app.store, app.store.clock().now())
        .await
        .unwrap();
    assert_eq!(rollout(&app, "cm").await["steps"][0]["state"], "waiting");
    // A poll in the second the step started may have come before its write.
    app.store.clock().advance(2);
    flux_inputs::controller::advance_rollouts(&app.store, app.store.clock().now())
        .await
        .unwrap();
    assert_eq!(rollout(&app, "cm").await["steps"][0]["state"], "waiting");
    assert_eq!(
        feed_tag(&app, "a").await,
        NEW,
        "the poll that passes the gate"
    );
    flux_inputs::controller::advance_rollouts(&app.store, app.store.clock().now())
        .await
        .unwrap();
    let r = rollout(&app, "cm").await;
    assert_eq!(r["current_step"], 1, "{r}");
    app.store.clock().advance(2);
    poll(&app, "b").await;
    flux_inputs::controller::advance_rollouts(&app.store, app.store.clock().now())
        .await
        .unwrap();
    flux_inputs::controller::advance_rollouts(&app.store, app.store.clock().now())
        .await
        .unwrap();
    assert_eq!(rollout(&app, "cm").await["state"], "succeeded");
    // component_version has no per-cluster override: it changes at promotion, for all.
    let feed = app
        .get(&format!(
            "/api/v2/flux/clusters/{}/platform-components",
            dns("a")
        ))
        .await;
    assert_eq!(
        feed.json["inputs"][0]["component_version"], "v1.17.0",
        "{}",
        feed.json
    );
}

#[tokio::test]
async fn conflicts_and_bad_requests() {
    let app = fleet(&demo_fleet()).await;
    poll_all(&app).await;
    let created = app.post("/rollouts", &spec("cm", waves())).await;
    assert_eq!(created.status, StatusCode::CREATED);
    // One active rollout per component.
    let message = app
        .post("/rollouts", &spec("cm-2", waves()))
        .await
        .expect_error(StatusCode::CONFLICT, "conflict");
    assert!(
        message.contains("already has an active rollout 'cm' (planned)"),
        "{message}"
    );
    app.post("/rollouts", &spec("cm", waves()))
        .await
        .expect_error(StatusCode::CONFLICT, "conflict");
    // No catalog write to the component meanwhile, however it comes.
    let message = app
        .put(
            "/platform_components/cert-manager",
            &json!({"oci_tag": "v9"}),
        )
        .await
        .expect_error(StatusCode::CONFLICT, "conflict");
    assert!(message.contains("rollout 'cm'"), "{message}");
    app.delete("/platform_components/cert-manager")
        .await
        .expect_error(StatusCode::CONFLICT, "conflict");
    // Other components and the clusters themselves stay writable.
    let other = app
        .put("/platform_components/loki", &json!({"oci_tag": "6.23.0"}))
        .await;
    assert_eq!(other.status, StatusCode::OK, "{}", other.json);
    // Verbs out of order.
    for v in ["pause", "resume", "rollback"] {
        verb(&app, "cm", v)
            .await
            .expect_error(StatusCode::CONFLICT, "conflict");
    }
    verb(&app, "nope", "start")
        .await
        .expect_error(StatusCode::NOT_FOUND, "not_found");
    // Aborted: the component is free again.
    assert_eq!(verb(&app, "cm", "abort").await.json["state"], "aborted");
    let ok = app
        .put(
            "/platform_components/cert-manager",
            &json!({"component_version": "v1.16.3"}),
        )
        .await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.json);
    let second = app.post("/rollouts", &spec("cm-2", waves())).await;
    assert_eq!(second.status, StatusCode::CREATED, "{}", second.json);

    // Rules a request must follow.
    for (body, expected) in [
        (
            json!({"id": "x", "component": "nope", "target": {"oci_tag": "1"}, "waves": [{"environment": "dev"}]}),
            "no platform component with id 'nope'",
        ),
        (
            json!({"id": "x", "component": "loki", "target": {"oci_tag": "6.23.0"}, "waves": [{"environment": "dev"}]}),
            "nothing to roll out",
        ),
        (
            json!({"id": "x", "component": "loki", "target": {"oci_tag": "7"}, "waves": [{}]}),
            "waves[0] selects nothing",
        ),
        (
            json!({"id": "x", "component": "loki", "target": {"oci_tag": "7"}, "waves": [{"clusters": ["dev-1"]}]}),
            "'dev-1' is not a cluster with 'loki' enabled",
        ),
        (
            json!({"id": "x", "component": "loki", "target": {"oci_tag": "7"}, "waves": [{"environment": "dev"}]}),
            "no wave selects a cluster to move",
        ),
        (
            json!({"id": "x", "component": "loki", "target": {"oci_tag": "7"}, "waves": [{"labels": {"bad key": "x"}}]}),
            "is not a Kubernetes label",
        ),
    ] {
        let message = app
            .post("/rollouts", &body)
            .await
            .expect_error(StatusCode::UNPROCESSABLE_ENTITY, "validation_error");
        assert!(message.contains(expected), "{message} / {expected}");
    }
    for body in [
        json!({"id": "x", "component": "loki", "target": {"oci_tag": "7"}, "waves": []}),
        json!({"id": "x", "component": "loki", "target": {}, "waves": [{"environment": "dev"}]}),
        json!({"id": "x", "component": "loki", "target": {"oci_tag": "7"}, "waves": [{"environment": "dev"}], "gate": "vibes"}),
        json!({"id": "x", "component": "loki", "target": {"oci_tag": "7"}, "waves": [{"environment": "dev", "batch": 0}]}),
        json!({"id": "X Y", "component": "loki", "target": {"oci_tag": "7"}, "waves": [{"environment": "dev"}]}),
    ] {
        let answer = app.post("/rollouts", &body).await;
        assert_eq!(
            answer.status,
            StatusCode::BAD_REQUEST,
            "{body}: {}",
            answer.json
        );
    }
    // Reading needs a token; writing needs the write token.
    let anonymous = app.call(Method::GET, "/rollouts", None, None).await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    let read_only = app
        .call(Method::POST, "/rollouts/cm-2/start", Some(READ), None)
        .await;
    assert_eq!(read_only.status, StatusCode::UNAUTHORIZED);
    let listed = app.get("/rollouts").await.json;
    let ids: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 2);
    assert!(
        listed[0]["steps"][0]["clusters"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    assert_eq!(listed[0]["steps"][0]["counts"]["pending"], 3);
}

#[tokio::test]
async fn the_example_rollout_plans_against_the_demo_fleet() {
    let app = TestApp::new();
    let example = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/rollouts/cert-manager-v1-17.json"
    ))
    .unwrap();
    let example: Value = serde_json::from_str(&example).unwrap();
    app.put(
        "/clusters/edge-prod-02",
        &json!({"labels": {"canary": "true"}}),
    )
    .await;
    let plan = app.post("/rollouts?dry_run=true", &example).await;
    assert_eq!(plan.status, StatusCode::OK, "{}", plan.json);
    let steps: Vec<&str> = plan.json["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["clusters"][0]["id"].as_str().unwrap())
        .collect();
    assert_eq!(steps, vec!["lab-dev-01", "edge-prod-02", "edge-qa-01"]);
    assert_eq!(plan.json["not_in_steps"][0]["id"], "edge-prod-01");
    assert_eq!(plan.json["not_in_steps"][0]["state"], "pinned");
}

#[tokio::test]
async fn a_step_the_inventory_rules_refuse_pauses_the_rollout_and_says_why() {
    let app = fleet(&[member("a", "dev")]).await;
    poll(&app, "a").await;
    // A tag so long the cluster's feed would pass Flux's 900 KiB limit.
    let mut body = spec("cm", json!([{"environment": "dev"}]));
    body["target"]["oci_tag"] = json!("v".repeat(950_000));
    let created = app.post("/rollouts", &body).await;
    assert_eq!(created.status, StatusCode::CREATED);
    verb(&app, "cm", "start").await;
    let before = fingerprint(&app).await;
    flux_inputs::controller::advance_rollouts(&app.store, now())
        .await
        .unwrap();
    let r = rollout(&app, "cm").await;
    assert_eq!(r["state"], "paused");
    let last = r["transitions"].as_array().unwrap().last().unwrap()["reason"]
        .as_str()
        .unwrap();
    assert!(
        last.starts_with("paused: step 0 cannot start: cluster 'a': GET ")
            && last.contains("over Flux's limit"),
        "{last}"
    );
    assert_eq!(cluster_of(&r, "a")["state"], "pending");
    assert!(fingerprint(&app).await == before, "nothing was written");
}

/// An aborted rollout leaves its clusters on the target: a later rollout of the component
/// moves them on (they are not pinned by it), and the aborted one can still be rolled back.
#[tokio::test]
async fn an_aborted_rollout_pins_nothing_and_can_be_rolled_back() {
    let app = fleet(&demo_fleet()).await;
    poll_all(&app).await;
    let created = app.post("/rollouts", &spec("cm", waves())).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.json);
    let mut t = now();
    verb(&app, "cm", "start").await;
    tick(&app, &mut t, 1).await;
    assert_eq!(feed_tag(&app, "dev-1").await, NEW);
    assert_eq!(verb(&app, "cm", "abort").await.json["state"], "aborted");
    assert_eq!(feed_tag(&app, "dev-1").await, NEW, "abort changes no feed");

    let mut next = spec("cm-next", waves());
    next["target"]["oci_tag"] = json!("v1.18.0");
    let plan = app.post("/rollouts?dry_run=true", &next).await;
    assert_eq!(plan.status, StatusCode::OK, "{}", plan.json);
    let pinned: Vec<&str> = plan.json["not_in_steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["state"] == "pinned")
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert!(
        !pinned.contains(&"dev-1"),
        "left by the aborted rollout: {pinned:?}"
    );
    assert!(
        pinned.contains(&"prod-pinned"),
        "pinned by hand: {pinned:?}"
    );

    let rolled_back = verb(&app, "cm", "rollback").await;
    assert_eq!(rolled_back.status, StatusCode::OK, "{}", rolled_back.json);
    assert_eq!(rolled_back.json["state"], "rolled_back");
    assert_eq!(feed_tag(&app, "dev-1").await, OLD, "previous value back");
}

/// prod runs cert-manager at `v1.16.3` through the overlay `prod-line`; `prod-bare` has it
/// only from that overlay, `prod-3` is held on `v1.15.9` by a higher overlay.
async fn overlay_fleet() -> TestApp {
    let mut members = vec![
        member("dev-1", "dev"),
        member("prod-1", "prod"),
        member("prod-2", "prod"),
        member("prod-3", "prod"),
    ];
    members[3].labels = json!({"hold": "yes"});
    let app = fleet(&members).await;
    let bare = json!({"id": "prod-bare", "cluster_name": "prod-bare", "cluster_dns": dns("prod-bare"),
                      "environment": "prod", "platform_components": []});
    assert_eq!(
        app.post("/clusters", &bare).await.status,
        StatusCode::CREATED
    );
    for overlay in [
        json!({"id": "prod-line", "selector": {"environment": "prod"},
               "platform_components": [{"id": COMPONENT, "enabled": true, "oci_tag": "v1.16.3"}]}),
        json!({"id": "prod-hold", "selector": {"labels": {"hold": "yes"}}, "priority": 10,
               "platform_components": [{"id": COMPONENT, "oci_tag": "v1.15.9"}]}),
    ] {
        let created = app.post("/overlays", &overlay).await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.json);
    }
    for id in ["dev-1", "prod-1", "prod-2", "prod-3", "prod-bare"]
        .into_iter()
        .chain(DEMO_USERS)
    {
        poll(&app, id).await;
    }
    app
}

fn overlay_spec(id: &str) -> Value {
    let mut spec = spec(id, json!([{"environment": "prod", "batch": 2}]));
    spec["overlay"] = json!("prod-line");
    spec
}

#[tokio::test]
async fn a_rollout_into_an_overlay_moves_only_what_it_matches_and_promotes_into_it() {
    let app = overlay_fleet().await;
    assert_eq!(feed_tag(&app, "prod-bare").await, "v1.16.3");
    // A catalog rollout sees the overlays: prod takes its tag from one, so prod is pinned.
    let catalog_plan = app
        .post(
            "/rollouts?dry_run=true",
            &spec("catalog", json!([{"environment": "prod"}])),
        )
        .await;
    catalog_plan.expect_error(StatusCode::UNPROCESSABLE_ENTITY, "validation_error");

    let created = app.post("/rollouts", &overlay_spec("prod-17")).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.json);
    let planned = &created.json;
    let pinned: Vec<&str> = planned["not_in_steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["state"] == "pinned")
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(pinned, ["edge-prod-01", "prod-3"], "{planned}");
    let moving: Vec<String> = planned["steps"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["clusters"].as_array().unwrap())
        .map(|c| c["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        moving,
        ["edge-prod-02", "prod-1", "prod-2", "prod-bare"],
        "dev-1 is not in scope"
    );

    // The overlay is the rollout's to write while it runs.
    app.put("/overlays/prod-line", &json!({"description": "mine"}))
        .await
        .expect_error(StatusCode::CONFLICT, "conflict");
    assert_eq!(verb(&app, "prod-17", "start").await.status, StatusCode::OK);
    let mut t = now();
    let mut before_promotion = None;
    for _ in 0..40 {
        tick(&app, &mut t, 1).await;
        let current = rollout(&app, "prod-17").await;
        if current["state"] != "running" {
            break;
        }
        for cluster in in_state(&current, "progressing") {
            assert_eq!(feed_tag(&app, &cluster).await, NEW, "{cluster} moved");
            report(&app, &cluster, "UpgradeSucceeded", NEW).await;
        }
        before_promotion = Some(fingerprint(&app).await);
        t += 5;
    }
    let r = rollout(&app, "prod-17").await;
    assert_eq!(r["state"], "succeeded", "{r}");
    assert!(
        fingerprint(&app).await == before_promotion.unwrap(),
        "promotion changes no feed"
    );
    // prod's overlay now says the target; the catalog and the other layers are as they were.
    let overlay = app.get("/overlays/prod-line").await.json;
    assert_eq!(
        overlay["platform_components"][0]["oci_tag"], NEW,
        "{overlay}"
    );
    assert_eq!(
        app.get("/platform_components/cert-manager").await.json["oci_tag"],
        OLD
    );
    assert_eq!(
        app.get("/clusters/prod-bare").await.json["platform_components"],
        json!([]),
        "the entry the rollout added is gone again"
    );
    assert_eq!(
        app.get("/clusters/prod-1").await.json["platform_components"][0]["oci_tag"],
        Value::Null
    );
    for (id, tag) in [
        ("prod-bare", NEW),
        ("prod-1", NEW),
        ("edge-prod-02", NEW),
        ("prod-3", "v1.15.9"),
        ("edge-prod-01", "v1.15.4"),
        ("dev-1", OLD),
    ] {
        assert_eq!(feed_tag(&app, id).await, tag, "{id}");
    }
    let effective = app.get("/clusters/prod-2/effective").await.json;
    assert_eq!(
        effective["platform_components"][0]["oci_tag"]["from"],
        "overlay:prod-line"
    );
}

#[tokio::test]
async fn rolling_back_an_overlay_rollout_removes_the_entries_it_added() {
    let app = overlay_fleet().await;
    let mut spec = overlay_spec("prod-17");
    spec["waves"] = json!([{"clusters": ["prod-bare"]}, {"environment": "prod"}]);
    assert_eq!(
        app.post("/rollouts", &spec).await.status,
        StatusCode::CREATED
    );
    let feeds = fingerprint(&app).await;
    assert_eq!(verb(&app, "prod-17", "start").await.status, StatusCode::OK);
    let mut t = now();
    tick(&app, &mut t, 1).await;
    assert_eq!(feed_tag(&app, "prod-bare").await, NEW);
    assert_eq!(
        app.get("/clusters/prod-bare").await.json["platform_components"][0]["oci_tag"],
        NEW
    );
    assert_eq!(
        verb(&app, "prod-17", "rollback").await.status,
        StatusCode::OK
    );
    assert_eq!(
        app.get("/clusters/prod-bare").await.json["platform_components"],
        json!([])
    );
    assert!(
        fingerprint(&app).await == feeds,
        "every feed as before the rollout"
    );
}
