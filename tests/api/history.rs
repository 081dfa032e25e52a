//! The audit trail, reverts and optimistic concurrency (ETag / If-Match).

use poem::http::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{READ, TestApp, WRITE};

async fn audit(app: &TestApp, query: &str) -> Vec<Value> {
    let answer = app
        .call(Method::GET, &format!("/audit{query}"), Some(WRITE), None)
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.json);
    answer.json.as_array().unwrap().clone()
}

fn namespace(id: &str) -> Value {
    json!({"id": id, "labels": {"team": "a"}})
}

#[tokio::test]
async fn every_write_appends_exactly_one_entry_with_before_and_after() {
    let app = TestApp::new();
    assert!(
        audit(&app, "").await.is_empty(),
        "the seed is not an API write"
    );
    app.post("/namespaces", &namespace("audited")).await;
    app.put("/namespaces/audited", &json!({"labels": {"team": "b"}}))
        .await;
    app.delete("/namespaces/audited").await;
    // Neither a dry run nor a refused write leaves a trace.
    app.post("/namespaces?dry_run=true", &namespace("dry"))
        .await;
    app.delete("/platform_components/cert-manager")
        .await
        .expect_error(StatusCode::CONFLICT, "conflict");
    app.put("/clusters/edge-qa-01", &json!({"node_count": 7}))
        .await;
    app.post(
        "/platform_components",
        &json!({"id": "kyverno", "component_path": "kyverno", "component_version": "1",
                                             "oci_url": "oci://x/kyverno", "oci_tag": "1"}),
    )
    .await;
    app.put("/rolebindings/dev-readers", &json!({"role": "edit"}))
        .await;

    let entries = audit(&app, "").await;
    let summary: Vec<(&str, &str, &str)> = entries
        .iter()
        .map(|e| {
            (
                e["method"].as_str().unwrap(),
                e["kind"].as_str().unwrap(),
                e["id"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("POST", "namespaces", "audited"),
            ("PUT", "namespaces", "audited"),
            ("DELETE", "namespaces", "audited"),
            ("PUT", "clusters", "edge-qa-01"),
            ("POST", "platform_components", "kyverno"),
            ("PUT", "rolebindings", "dev-readers"),
        ]
    );
    let revisions: Vec<i64> = entries
        .iter()
        .map(|e| e["revision"].as_i64().unwrap())
        .collect();
    assert!(revisions.windows(2).all(|w| w[0] < w[1]), "monotonic");
    assert!(entries[0]["before"].is_null() && entries[0]["after"]["labels"]["team"] == "a");
    assert_eq!(entries[1]["before"]["labels"]["team"], "a");
    assert_eq!(entries[1]["after"]["labels"]["team"], "b");
    assert!(entries[2]["after"].is_null() && entries[2]["before"]["id"] == "audited");
    assert_eq!(entries[3]["before"]["node_count"], 3);
    assert_eq!(entries[3]["after"]["node_count"], 7);
    assert!(
        entries
            .iter()
            .all(|e| e["actor"] == "write-token" && e["at"].as_i64().unwrap() > 0)
    );

    assert_eq!(audit(&app, "?kind=namespaces").await.len(), 3);
    assert_eq!(
        audit(&app, "?kind=namespaces&id=audited&limit=1").await[0]["method"],
        "POST"
    );
    let since = audit(&app, &format!("?since_revision={}", revisions[3])).await;
    assert_eq!(since.len(), 2);
    let answer = app.call(Method::GET, "/audit", Some(READ), None).await;
    answer.expect_error(StatusCode::UNAUTHORIZED, "unauthorized");
}

#[tokio::test]
async fn revert_undoes_a_create_an_update_and_a_delete_and_is_audited() {
    let app = TestApp::new();
    let revert = |revision: i64| format!("/audit/{revision}/revert");
    let created = app.post("/namespaces", &namespace("undo-me")).await;
    let rev = |answer: &crate::helpers::Answer| -> i64 {
        answer
            .header("etag")
            .unwrap()
            .trim_matches('"')
            .parse()
            .unwrap()
    };
    let create_rev = rev(&created);
    let updated = app
        .put("/namespaces/apps", &json!({"labels": {"changed": "yes"}}))
        .await;
    let update_rev = rev(&updated);
    // Emptying a feed needs confirming (the blast-radius rail).
    let emptied = app
        .put(
            "/clusters/edge-prod-02?confirm=1",
            &json!({"rolebindings": []}),
        )
        .await;
    assert_eq!(emptied.status, StatusCode::OK, "{}", emptied.json);
    app.delete("/rolebindings/platform-admins")
        .await
        .expect_error(StatusCode::CONFLICT, "conflict");
    let deleted = app.delete("/clusters/edge-prod-02").await;
    assert_eq!(deleted.status, StatusCode::OK);
    let delete_rev = audit(&app, "?kind=clusters&id=edge-prod-02")
        .await
        .last()
        .unwrap()["revision"]
        .as_i64()
        .unwrap();

    let answer = app.post(&revert(update_rev), &json!({})).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.json);
    assert_eq!(
        app.get("/namespaces/apps").await.json["labels"]["team"],
        "product",
        "update undone"
    );

    let answer = app.post(&revert(delete_rev), &json!({})).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.json);
    let restored = app.get("/clusters/edge-prod-02").await;
    assert_eq!(
        restored.json["rolebindings"],
        json!([]),
        "restored as it was right before the delete"
    );
    assert_eq!(
        app.get("/api/v2/flux/clusters/edge-prod-02.k8s.example.com/platform-components")
            .await
            .status,
        200
    );

    let answer = app.post(&revert(create_rev), &json!({})).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(
        app.get("/namespaces/undo-me").await.status,
        StatusCode::NOT_FOUND,
        "create undone"
    );

    let methods: Vec<String> = audit(&app, "")
        .await
        .iter()
        .map(|e| e["method"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        methods.iter().filter(|m| *m == "REVERT").count(),
        3,
        "reverts are audited: {methods:?}"
    );
    app.post(&revert(999_999), &json!({}))
        .await
        .expect_error(StatusCode::NOT_FOUND, "not_found");
}

#[tokio::test]
async fn a_revert_that_would_dangle_is_refused() {
    let app = TestApp::new();
    let created = app.post("/namespaces", &namespace("in-use")).await;
    let create_rev: i64 = created
        .header("etag")
        .unwrap()
        .trim_matches('"')
        .parse()
        .unwrap();
    let refs = json!([{"id": "cert-manager"}, {"id": "in-use"}]);
    app.put("/clusters/edge-prod-01", &json!({"namespaces": refs}))
        .await;
    let before = app.all_feeds().await;
    let answer = app
        .post(&format!("/audit/{create_rev}/revert"), &json!({}))
        .await;
    let message = answer.expect_error(StatusCode::CONFLICT, "conflict");
    assert!(message.contains("edge-prod-01"), "{message}");
    assert_eq!(app.all_feeds().await, before, "nothing changed");
}

#[tokio::test]
async fn etags_and_if_match_make_concurrent_edits_safe() {
    let app = TestApp::new();
    let fetched = app.get("/clusters/edge-qa-01").await;
    let etag = fetched.header("etag").expect("an ETag").to_owned();
    assert_eq!(etag, "\"0\"", "never written through the API");

    let put = |node_count: i64, tag: String| {
        let client = &app.client;
        async move {
            let response = client
                .put("/clusters/edge-qa-01")
                .header("Authorization", format!("Bearer {WRITE}"))
                .header("If-Match", tag)
                .body_json(&json!({"node_count": node_count}))
                .send()
                .await;
            crate::helpers::answer(response.0).await
        }
    };
    let (a, b) = tokio::join!(put(10, etag.clone()), put(20, etag.clone()));
    let statuses = [a.status.as_u16(), b.status.as_u16()];
    assert!(
        statuses.contains(&200) && statuses.contains(&412),
        "exactly one wins: {statuses:?}"
    );
    let loser = if a.status == 412 { &a } else { &b };
    loser.expect_error(StatusCode::PRECONDITION_FAILED, "precondition_failed");
    let winner = if a.status == 200 { &a } else { &b };
    let current = app.get("/clusters/edge-qa-01").await;
    assert_eq!(current.json["node_count"], winner.json["node_count"]);
    assert_eq!(current.header("etag"), winner.header("etag"));

    // Without If-Match, writes behave as before; a stale tag on DELETE is refused.
    assert_eq!(
        app.put("/clusters/edge-qa-01", &json!({"node_count": 1}))
            .await
            .status,
        200
    );
    let stale = app
        .raw(
            Method::DELETE,
            "/clusters/edge-qa-01",
            &[("Authorization", "Bearer write-token"), ("If-Match", &etag)],
            Vec::new(),
        )
        .await;
    stale.expect_error(StatusCode::PRECONDITION_FAILED, "precondition_failed");
    assert_eq!(
        app.get("/clusters/edge-qa-01").await.status,
        200,
        "not deleted"
    );
    let bad = app
        .raw(
            Method::DELETE,
            "/clusters/edge-qa-01",
            &[
                ("Authorization", "Bearer write-token"),
                ("If-Match", "yesterday"),
            ],
            Vec::new(),
        )
        .await;
    bad.expect_error(StatusCode::BAD_REQUEST, "bad_request");
}
