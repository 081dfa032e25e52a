//! Maintenance windows and freezes (README, "Maintenance windows"): a collection like the
//! others, and every write that changes the feed of a closed cluster refused unless it says
//! how many closed clusters it changes. Time is the store's adjustable clock, set per test.

use poem::http::{Method, StatusCode};
use serde_json::{Value, json};

use crate::console;
use crate::helpers::{TestApp, WRITE};

const PROD_01: &str = "/api/v2/flux/clusters/edge-prod-01.k8s.example.com/platform-components";

/// Unix seconds of an RFC 3339 instant.
fn at(text: &str) -> i64 {
    let parsed = std::process::Command::new("date")
        .args(["-u", "-d", text, "+%s"])
        .output()
        .expect("date runs");
    String::from_utf8(parsed.stdout)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// Stores in prod: closed Monday to Saturday, 08:00 to 20:00 Berlin time.
fn opening_hours() -> Value {
    json!({
        "id": "stores-open-hours", "description": "no change while the shop is open",
        "selector": {"environment": "prod"}, "kind": "deny",
        "recurrence": {"days": ["mon", "tue", "wed", "thu", "fri", "sat"], "start": "08:00",
                       "duration_minutes": 720, "time_zone": "Europe/Berlin"}
    })
}

async fn audit(app: &TestApp, path: &str) -> Value {
    app.call(Method::GET, path, Some(WRITE), None).await.json
}

async fn traefik_tag(app: &TestApp, feed: &str) -> Value {
    let answer = app.get(feed).await;
    answer.json["inputs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["id"] == "traefik")
        .map(|i| i["source"]["oci_tag"].clone())
        .unwrap_or(Value::Null)
}

#[tokio::test]
async fn a_window_is_a_collection_like_the_others() {
    let app = TestApp::new();
    let created = app.post("/windows", &opening_hours()).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.json);
    assert_eq!(
        created.header("location"),
        Some("/windows/stores-open-hours")
    );
    app.post("/windows", &opening_hours())
        .await
        .expect_error(StatusCode::CONFLICT, "conflict");

    // Every problem of a schedule is named.
    let mut bad = opening_hours();
    bad["id"] = json!("bad");
    bad["recurrence"]["time_zone"] = json!("Europe/Atlantis");
    bad["recurrence"]["days"] = json!(["mon", "someday"]);
    let message = app
        .post("/windows", &bad)
        .await
        .expect_error(StatusCode::UNPROCESSABLE_ENTITY, "validation_error");
    assert!(
        message.contains("Europe/Atlantis") && message.contains("someday"),
        "{message}"
    );
    bad = json!({"id": "both", "kind": "deny", "selector": {},
        "recurrence": opening_hours()["recurrence"],
        "absolute": {"from": "2026-11-27T00:00:00Z", "to": "2026-11-30T23:59:59Z"}});
    let message = app
        .post("/windows", &bad)
        .await
        .expect_error(StatusCode::UNPROCESSABLE_ENTITY, "validation_error");
    assert!(message.contains("exactly one"), "{message}");
    bad = json!({"id": "backwards", "kind": "deny",
        "absolute": {"from": "2026-11-30T00:00:00Z", "to": "2026-11-27T00:00:00Z"}});
    app.post("/windows", &bad)
        .await
        .expect_error(StatusCode::UNPROCESSABLE_ENTITY, "validation_error");

    // PUT keeps omitted fields; a new schedule replaces the old one.
    let updated = app
        .put(
            "/windows/stores-open-hours",
            &json!({"absolute": {"from": "2026-11-27T00:00:00Z", "to": "2026-11-30T23:59:59Z"}}),
        )
        .await;
    assert_eq!(updated.status, StatusCode::OK, "{}", updated.json);
    assert_eq!(updated.json["kind"], "deny");
    assert_eq!(
        updated.json["selector"],
        json!({"environment": "prod", "labels": {}})
    );
    assert!(updated.json.get("recurrence").is_none(), "{}", updated.json);

    let listed = app.get("/windows").await;
    assert_eq!(listed.json.as_array().unwrap().len(), 1);
    let metrics = String::from_utf8(app.get("/metrics").await.bytes).unwrap();
    assert!(
        metrics.contains("flux_inputs_inventory_items{kind=\"windows\"} 1"),
        "{metrics}"
    );

    // Deleted, then put back from the audit trail.
    assert_eq!(
        app.delete("/windows/stores-open-hours").await.status,
        StatusCode::OK
    );
    let audit = audit(&app, "/audit?kind=windows").await;
    let entries = audit.as_array().unwrap();
    assert_eq!(entries.len(), 3, "{audit}");
    let deleted = entries[2]["revision"].as_i64().unwrap();
    let reverted = app
        .post(&format!("/audit/{deleted}/revert"), &json!({}))
        .await;
    assert_eq!(reverted.status, StatusCode::OK, "{}", reverted.json);
    assert_eq!(
        app.get("/windows/stores-open-hours").await.json["kind"],
        "deny"
    );
}

#[tokio::test]
async fn a_write_to_a_closed_cluster_is_refused_then_confirmed_and_the_audit_says_so() {
    let app = TestApp::new();
    // Wednesday 2 December 2026, 10:00 in Berlin (09:00Z): the stores are open, so closed.
    app.store.clock().set(at("2026-12-02T09:00:00Z"));
    assert_eq!(
        app.post("/windows", &opening_hours()).await.status,
        StatusCode::CREATED
    );

    // traefik runs on both prod clusters and two others.
    let edit = json!({"oci_tag": "33.0.0"});
    let message = app
        .put("/platform_components/traefik", &edit)
        .await
        .expect_error(StatusCode::CONFLICT, "window_closed");
    for words in [
        "edge-prod-01",
        "edge-prod-02",
        "stores-open-hours",
        "confirm_closed=2",
    ] {
        assert!(message.contains(words), "{message}");
    }
    assert_eq!(
        traefik_tag(&app, PROD_01).await,
        "33.2.1",
        "nothing was written"
    );

    // The dry run says the same, as data.
    let preview = app
        .put("/platform_components/traefik?dry_run=true", &edit)
        .await;
    assert_eq!(preview.json["status"], 409, "{}", preview.json);
    assert_eq!(preview.json["window_closed"]["clusters"], 2);
    assert_eq!(preview.json["window_closed"]["refused"], true);
    assert_eq!(
        preview.json["window_closed"]["listed"][0],
        json!({"cluster_id": "edge-prod-01", "windows": ["stores-open-hours"]})
    );

    // A wrong number is refused too; the right one overrides the window, on the record.
    app.put("/platform_components/traefik?confirm_closed=1", &edit)
        .await
        .expect_error(StatusCode::CONFLICT, "window_closed");
    let written = app
        .put("/platform_components/traefik?confirm_closed=2", &edit)
        .await;
    assert_eq!(written.status, StatusCode::OK, "{}", written.json);
    assert_eq!(traefik_tag(&app, PROD_01).await, "33.0.0");
    let audit = audit(&app, "/audit?kind=platform_components&id=traefik").await;
    let entry = audit.as_array().unwrap().last().unwrap().clone();
    assert_eq!(entry["window_override"]["clusters"], 2, "{entry}");

    // A write that changes no closed cluster needs nothing.
    let qa = app
        .put("/clusters/edge-qa-01", &json!({"node_count": 5}))
        .await;
    assert_eq!(qa.status, StatusCode::OK, "{}", qa.json);
    let qa_only = app
        .post(
            "/overlays",
            &json!({"id": "qa-traefik", "selector": {"environment": "qa"},
                    "platform_components": [{"id": "traefik", "oci_tag": "31.0.0"}]}),
        )
        .await;
    assert_eq!(qa_only.status, StatusCode::CREATED, "{}", qa_only.json);

    // Moving a cluster out of the freeze is itself a change to a closed cluster.
    app.put("/clusters/edge-prod-01", &json!({"environment": "uat"}))
        .await
        .expect_error(StatusCode::CONFLICT, "window_closed");

    // The revert of the confirmed write changes the closed clusters again: it asks too.
    let revision = entry["revision"].as_i64().unwrap();
    app.post(&format!("/audit/{revision}/revert"), &json!({}))
        .await
        .expect_error(StatusCode::CONFLICT, "window_closed");
    let reverted = app
        .post(
            &format!("/audit/{revision}/revert?confirm_closed=2"),
            &json!({}),
        )
        .await;
    assert_eq!(reverted.status, StatusCode::OK, "{}", reverted.json);
    assert_eq!(traefik_tag(&app, PROD_01).await, "33.2.1");

    // After closing time (21:00 in Berlin) the same write needs no confirmation.
    app.store.clock().set(at("2026-12-02T20:00:00Z"));
    let evening = app.put("/platform_components/traefik", &edit).await;
    assert_eq!(evening.status, StatusCode::OK, "{}", evening.json);
}

#[tokio::test]
async fn a_cluster_says_whether_it_may_change_and_when_that_changes() {
    let app = TestApp::new();
    // Saturday 28 November 2026, 12:00Z: inside a freeze weekend, and outside the nightly
    // allow window of the prod clusters.
    app.store.clock().set(at("2026-11-28T12:00:00Z"));
    let freeze = json!({"id": "black-friday", "kind": "deny", "selector": {},
        "absolute": {"from": "2026-11-27T00:00:00Z", "to": "2026-11-30T23:59:59Z"}});
    let nights = json!({"id": "prod-nights", "kind": "allow", "selector": {"environment": "prod"},
        "recurrence": {"days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"], "start": "22:00",
                       "duration_minutes": 360, "time_zone": "America/New_York"}});
    for window in [&freeze, &nights] {
        assert_eq!(
            app.post("/windows", window).await.status,
            StatusCode::CREATED
        );
    }
    let qa = app.get("/clusters/edge-qa-01/windows").await;
    assert_eq!(qa.status, StatusCode::OK, "{}", qa.json);
    assert_eq!(qa.json["open"], false);
    assert_eq!(qa.json["closed_by"], json!(["black-friday"]));
    // The freeze ends at 23:59:59Z on Monday 30 November.
    assert_eq!(qa.json["next_change_at"], "2026-11-30T23:59:59Z");

    let prod = app.get("/clusters/edge-prod-01/windows").await;
    assert_eq!(prod.json["closed_by"], json!(["black-friday"]));
    assert_eq!(prod.json["windows"].as_array().unwrap().len(), 2);
    // After the freeze, prod stays closed until the next night in New York: 22:00 EST on
    // 30 November is 03:00Z on 1 December.
    assert_eq!(prod.json["next_change_at"], "2026-12-01T03:00:00Z");

    app.store.clock().set(at("2026-12-01T04:00:00Z"));
    let night = app.get("/clusters/edge-prod-01/windows").await;
    assert_eq!(night.json["open"], true, "{}", night.json);
    assert_eq!(night.json["closed_by"], json!([]));
    // Open until 04:00 New York time: 09:00Z.
    assert_eq!(night.json["next_change_at"], "2026-12-01T09:00:00Z");

    app.get("/clusters/nowhere/windows")
        .await
        .expect_error(StatusCode::NOT_FOUND, "not_found");
}

#[tokio::test]
async fn a_rollout_canary_waits_for_its_window_and_moves_when_it_opens() {
    use crate::rollouts::{NEW, OLD, cluster_of, feed_tag, fleet, member, poll, rollout, verb};
    let mut canary = member("store-canary", "prod");
    canary.labels = json!({"canary": "true"});
    let app = fleet(&[canary]).await;
    let clock = app.store.clock().clone();
    // Wednesday 2 December 2026, 10:00 in Berlin: the store is open, so closed to changes
    // until 20:00 (19:00Z).
    let mut t = at("2026-12-02T09:00:00Z");
    clock.set(t);
    let hours = json!({"id": "store-hours", "kind": "deny", "selector": {"labels": {"canary": "true"}},
        "recurrence": {"days": ["mon", "tue", "wed", "thu", "fri", "sat"], "start": "08:00",
                       "duration_minutes": 720, "time_zone": "Europe/Berlin"}});
    assert_eq!(
        app.post("/windows", &hours).await.status,
        StatusCode::CREATED
    );
    let spec = json!({"id": "cm", "component": "cert-manager", "target": {"oci_tag": NEW},
        "waves": [{"labels": {"canary": "true"}}], "gate": "polled", "bake_seconds": 5,
        "wave_timeout_seconds": 60, "max_failures": 0, "on_failure": "pause"});
    assert_eq!(
        app.post("/rollouts", &spec).await.status,
        StatusCode::CREATED
    );
    poll(&app, "store-canary").await;
    assert_eq!(verb(&app, "cm", "start").await.status, StatusCode::OK);

    tick(&app, t).await;
    let r = rollout(&app, "cm").await;
    let waiting = cluster_of(&r, "store-canary");
    assert_eq!(waiting["state"], "waiting_window", "{r}");
    assert_eq!(waiting["window_opens_at"], "2026-12-02T19:00:00Z");
    assert_eq!(r["steps"][0]["counts"]["waiting_window"], 1);
    assert_eq!(
        feed_tag(&app, "store-canary").await,
        OLD,
        "not moved while closed"
    );
    // The console's rollout page lists it with the time its window opens.
    let cookie = console::cookie_of(&console::sign_in(&app, crate::helpers::READ).await);
    let shown = console::text(&console::page(&app, &cookie, "/ui/rollouts/cm").await);
    assert!(
        shown.contains("Waiting for a maintenance window")
            && shown.contains(r#"datetime="2026-12-02T19:00:00Z""#),
        "{shown}"
    );

    // Hours pass, far beyond wave_timeout_seconds: waiting is neither a failure nor a timeout.
    for _ in 0..9 {
        t += 3600;
        clock.set(t);
        poll(&app, "store-canary").await;
        tick(&app, t).await;
    }
    let r = rollout(&app, "cm").await;
    assert_eq!(r["state"], "running", "{r}");
    assert_eq!(cluster_of(&r, "store-canary")["state"], "waiting_window");
    assert_eq!(feed_tag(&app, "store-canary").await, OLD);

    // 20:00 in Berlin: the window opens, the canary gets the target, its deadline starts now.
    t = at("2026-12-02T19:00:00Z");
    clock.set(t);
    poll(&app, "store-canary").await;
    tick(&app, t).await;
    let r = rollout(&app, "cm").await;
    assert_eq!(
        cluster_of(&r, "store-canary")["state"],
        "progressing",
        "{r}"
    );
    assert_eq!(feed_tag(&app, "store-canary").await, NEW);
    let notes: Vec<&str> = r["transitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["reason"].as_str().unwrap())
        .collect();
    assert!(
        notes
            .iter()
            .any(|n| n.contains("wait for a maintenance window"))
            && notes
                .iter()
                .any(|n| n.contains("whose maintenance window opened")),
        "{notes:?}"
    );

    // Gate, bake and promotion as always.
    t += 2;
    clock.set(t);
    poll(&app, "store-canary").await;
    tick(&app, t).await;
    t += 10;
    clock.set(t);
    tick(&app, t).await;
    tick(&app, t).await;
    assert_eq!(rollout(&app, "cm").await["state"], "succeeded");
}

async fn tick(app: &TestApp, t: i64) {
    flux_inputs::controller::advance_rollouts(&app.store, t)
        .await
        .expect("controller runs");
}
