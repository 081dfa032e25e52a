//! Safety rails (README, "Safety rails"): a write that would make Flux prune workloads on purpose only.

use poem::http::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::TestApp;

#[tokio::test]
async fn emptying_a_feed_needs_confirmation_and_a_refusal_changes_nothing() {
    let app = TestApp::new();
    let feeds = app.all_feeds().await;
    let audit = app.get("/audit").await.json;

    // Every component of lab-dev-01 disabled: Flux would prune them all.
    let cluster = app.get("/clusters/lab-dev-01").await.json;
    let disabled: Vec<Value> = cluster["platform_components"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let mut c = c.clone();
            c["enabled"] = json!(false);
            c
        })
        .collect();
    let body = json!({"platform_components": disabled});
    let refused = app.put("/clusters/lab-dev-01", &body).await;
    let message = refused.expect_error(StatusCode::CONFLICT, "blast_radius");
    for words in [
        "empty a feed on 1 cluster",
        "platform-components: 1 clusters, 4 inputs, 1 emptied",
        "lab-dev-01 (platform-components 4 → 0)",
        "?confirm=1",
    ] {
        assert!(message.contains(words), "{message} names {words}");
    }
    app.put("/clusters/lab-dev-01?confirm=3", &body)
        .await
        .expect_error(StatusCode::CONFLICT, "blast_radius");
    assert_eq!(app.all_feeds().await, feeds, "nothing changed");
    assert_eq!(app.get("/audit").await.json, audit);

    // A dry run answers the same numbers without refusing.
    let preview = app.put("/clusters/lab-dev-01?dry_run=true", &body).await;
    assert_eq!(preview.status, StatusCode::ACCEPTED, "{}", preview.json);
    assert_eq!(
        preview.json["status"], 409,
        "what the real write would answer"
    );
    let radius = &preview.json["blast_radius"];
    assert_eq!(radius["clusters_shrunk"], 1);
    assert_eq!(radius["clusters_emptied"], 1);
    assert_eq!(radius["needs_confirm"], true);
    assert_eq!(radius["feeds"][0]["inputs_lost"], 4);

    let confirmed = app.put("/clusters/lab-dev-01?confirm=1", &body).await;
    assert_eq!(confirmed.status, StatusCode::OK, "{}", confirmed.json);
    let feed = app
        .get("/api/v2/flux/clusters/lab-dev-01.k8s.example.com/platform-components")
        .await;
    assert!(
        feed.json["inputs"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["enabled"] == false)
    );
}

#[tokio::test]
async fn taking_one_input_from_one_cluster_is_an_ordinary_write() {
    let app = TestApp::new();
    let cluster = app.get("/clusters/edge-qa-01").await.json;
    let fewer: Vec<Value> = cluster["platform_components"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["id"] != "external-secrets")
        .cloned()
        .collect();
    let answer = app
        .put(
            "/clusters/edge-qa-01",
            &json!({"platform_components": fewer}),
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.json);
}

#[tokio::test]
async fn reverting_into_an_empty_feed_needs_confirmation_too() {
    let app = TestApp::new();
    let emptied = app
        .put("/clusters/lab-dev-01?confirm=1", &json!({"namespaces": []}))
        .await;
    assert_eq!(emptied.status, StatusCode::OK, "{}", emptied.json);
    let emptying = emptied.header("etag").unwrap().trim_matches('"').to_owned();
    // Undoing it gives the namespaces back: nothing to confirm.
    let restored = app
        .call(
            Method::POST,
            &format!("/audit/{emptying}/revert"),
            Some(crate::helpers::WRITE),
            None,
        )
        .await;
    assert_eq!(restored.status, StatusCode::OK, "{}", restored.json);
    let restoring = restored.json["revision"].as_i64().unwrap();
    // Undoing the undo empties the feed again.
    let path = format!("/audit/{restoring}/revert");
    app.call(Method::POST, &path, Some(crate::helpers::WRITE), None)
        .await
        .expect_error(StatusCode::CONFLICT, "blast_radius");
    let again = app
        .call(
            Method::POST,
            &format!("{path}?confirm=1"),
            Some(crate::helpers::WRITE),
            None,
        )
        .await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.json);
}

#[tokio::test]
async fn deleting_a_namespace_in_use_is_refused_before_any_feed_shrinks() {
    let app = TestApp::new();
    let feeds = app.all_feeds().await;
    app.delete("/namespaces/apps")
        .await
        .expect_error(StatusCode::CONFLICT, "conflict");
    assert_eq!(app.all_feeds().await, feeds);
}

/// An import that disables a component on 20 clusters (more than max_clusters_shrunk = 10).
#[test]
fn an_import_disabling_inputs_across_the_fleet_needs_confirm_n() {
    let dir = tempfile::tempdir().unwrap();
    let (database, seed, disabled) = (
        dir.path().join("inventory.db"),
        dir.path().join("fleet.json"),
        dir.path().join("disabled.json"),
    );
    crate::scale::generated_seed(&seed, 20);
    let mut fleet: Value = serde_json::from_str(&std::fs::read_to_string(&seed).unwrap()).unwrap();
    for cluster in fleet["clusters"].as_array_mut().unwrap() {
        cluster["platform_components"][0]["enabled"] = json!(false);
    }
    std::fs::write(&disabled, fleet.to_string()).unwrap();
    let run = |args: &[&str]| crate::cli::run(&database, args);
    assert!(run(&["import", seed.to_str().unwrap()]).status.success());
    let before = run(&["export"]).stdout;

    let refused = run(&["import", disabled.to_str().unwrap()]);
    assert_eq!(refused.status.code(), Some(3));
    let message = String::from_utf8_lossy(&refused.stderr).into_owned();
    assert!(
        message.contains("20 clusters, more than max_clusters_shrunk (10)")
            && message.contains("--confirm 20"),
        "{message}"
    );
    assert_eq!(run(&["export"]).stdout, before, "nothing imported");

    let dry = run(&["import", disabled.to_str().unwrap(), "--dry-run"]);
    let preview: Value = serde_json::from_slice(&dry.stdout).unwrap();
    assert_eq!(preview["blast_radius"]["clusters_shrunk"], 20);
    assert_eq!(preview["blast_radius"]["clusters_emptied"], 0);
    assert_eq!(preview["blast_radius"]["needs_confirm"], true);

    let wrong = run(&["import", disabled.to_str().unwrap(), "--confirm", "19"]);
    assert_eq!(wrong.status.code(), Some(3));
    let confirmed = run(&["import", disabled.to_str().unwrap(), "--confirm", "20"]);
    assert!(
        confirmed.status.success(),
        "{}",
        String::from_utf8_lossy(&confirmed.stderr)
    );
    assert_ne!(run(&["export"]).stdout, before);
}

#[tokio::test]
async fn patch_keys_inside_each_other_are_refused() {
    let app = TestApp::new();
    let feeds = app.all_feeds().await;
    let body = json!({"patches": {"podinfo": {"ui": {"color": "#000"}, "ui.message": "hi"}}});
    let message = app
        .put("/clusters/lab-dev-01", &body)
        .await
        .expect_error(StatusCode::UNPROCESSABLE_ENTITY, "validation_error");
    assert!(
        message.contains("patches.podinfo: keys 'ui' and 'ui.message' overlap"),
        "{message}"
    );
    assert_eq!(app.all_feeds().await, feeds);
    // An escaped dot is part of the key, not a level.
    let escaped = json!({"patches": {"podinfo": {"podAnnotations.prometheus\\.io/scrape": "true",
                                                 "podAnnotations.prometheus\\.io/port": 9898}}});
    let answer = app.put("/clusters/lab-dev-01", &escaped).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.json);
    let feed = app
        .get("/api/v2/flux/clusters/lab-dev-01.k8s.example.com/platform-components")
        .await;
    let podinfo = feed.json["inputs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["id"] == "podinfo")
        .unwrap()
        .clone();
    assert_eq!(
        podinfo["values"],
        json!({"podAnnotations": {"prometheus.io/port": 9898, "prometheus.io/scrape": "true"}})
    );
}

#[test]
fn an_import_with_overlapping_patch_keys_is_refused_and_names_the_record() {
    let dir = tempfile::tempdir().unwrap();
    let database = dir.path().join("inventory.db");
    let mut demo: Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/seed/demo.json")).unwrap(),
    )
    .unwrap();
    demo["clusters"][0]["patches"]["podinfo"]["ui"] = json!({"color": "#000"});
    let file = dir.path().join("overlap.json");
    std::fs::write(&file, demo.to_string()).unwrap();
    let refused = crate::cli::run(&database, &["import", file.to_str().unwrap()]);
    assert_eq!(refused.status.code(), Some(3));
    let message = String::from_utf8_lossy(&refused.stderr);
    assert!(
        message.contains("keys 'ui' and 'ui.color' overlap"),
        "{message}"
    );
}

/// `empty_feed_guard = false`: a write may empty a cluster's feed without `?confirm=`, as
/// flux-resourceset allows (the count-based limit is unchanged: `domain::blast`'s tests).
#[tokio::test]
async fn without_the_empty_feed_guard_an_emptied_feed_needs_no_confirmation() {
    let app = TestApp::configured(|config| config.empty_feed_guard = false);
    let cluster = app.get("/clusters/lab-dev-01").await.json;
    let disabled: Vec<Value> = cluster["platform_components"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let mut c = c.clone();
            c["enabled"] = json!(false);
            c
        })
        .collect();
    let body = json!({"platform_components": disabled});
    let preview = app.put("/clusters/lab-dev-01?dry_run=true", &body).await;
    assert_eq!(preview.json["blast_radius"]["empty_feed_guard"], false);
    assert_eq!(preview.json["blast_radius"]["clusters_emptied"], 1);
    assert_eq!(preview.json["blast_radius"]["needs_confirm"], false);
    let emptied = app.put("/clusters/lab-dev-01", &body).await;
    assert_eq!(emptied.status, StatusCode::OK, "{}", emptied.json);
}
