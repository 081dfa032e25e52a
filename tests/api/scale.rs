//! Writes at fleet scale: queued writers, bounded dry runs, a streaming import of a large
//! generated file (clusters listed before the catalog they reference).

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use poem::http::StatusCode;
use serde_json::json;

use crate::helpers::TestApp;
use flux_inputs::config::SeedSource;

/// A seed of `clusters` clusters, each with `shared` (on every cluster) and two components of
/// its own tier, written with the clusters first.
pub fn generated_seed(path: &Path, clusters: usize) {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    write!(out, r#"{{"clusters":["#).unwrap();
    for c in 0..clusters {
        if c > 0 {
            out.write_all(b",").unwrap();
        }
        let env = ["dev", "qa", "uat", "prod"][c % 4];
        write!(
            out,
            r#"{{"id":"c{c:06}","cluster_name":"c{c:06}","cluster_dns":"c{c:06}.fleet.example.com","environment":"{env}","platform_components":[{{"id":"shared","enabled":true,"oci_tag":null,"component_path":null}},{{"id":"tier-{env}","enabled":true,"oci_tag":null,"component_path":null}}],"namespaces":[{{"id":"apps"}}],"patches":{{"shared":{{"replicas":{}}}}}}}"#,
            1 + c % 3
        )
        .unwrap();
    }
    write!(out, r#"],"platform_components":["#).unwrap();
    for (i, id) in ["shared", "tier-dev", "tier-qa", "tier-uat", "tier-prod"]
        .iter()
        .enumerate()
    {
        if i > 0 {
            out.write_all(b",").unwrap();
        }
        write!(
            out,
            r#"{{"id":"{id}","component_path":"charts/{id}","component_version":"1.0.0","oci_url":"oci://r.example.com/{id}","oci_tag":"1.0.0","depends_on":[]}}"#
        )
        .unwrap();
    }
    write!(
        out,
        r#"],"namespaces":[{{"id":"apps","labels":{{}},"annotations":{{}}}}]}}"#
    )
    .unwrap();
}

#[tokio::test]
async fn a_dry_run_of_a_fleet_wide_edit_counts_everything_and_lists_pages_of_100() {
    let dir = tempfile::tempdir().unwrap();
    let seed = dir.path().join("seed.json");
    generated_seed(&seed, 250);
    let app = TestApp::configured(|config| config.seed = SeedSource::File(seed.clone()));
    let edit = json!({"oci_tag": "1.1.0"});
    let first = app
        .put("/platform_components/shared?dry_run=true", &edit)
        .await;
    assert_eq!(first.status, StatusCode::ACCEPTED, "{}", first.json);
    assert_eq!(first.json["clusters_changed"], 250);
    let summary = &first.json["summary"][0];
    assert_eq!(summary["feed"], "platform-components");
    assert_eq!(
        (summary["clusters"].as_u64(), summary["changed"].as_u64()),
        (Some(250), Some(250))
    );
    assert_eq!(
        first.json["summary"][1]["clusters"], 0,
        "namespaces are untouched"
    );
    let listed = first.json["changes"].as_array().unwrap();
    assert_eq!(listed.len(), 100, "at most 100 clusters listed");
    assert_eq!(listed[0]["cluster_dns"], "c000000.fleet.example.com");
    assert_eq!(listed[0]["changed"], json!(["shared"]));
    assert_eq!(first.json["truncated"], true);
    assert_eq!(first.json["next_changes_offset"], 100);
    assert!(
        first.bytes.len() < 40_000,
        "bounded: {} bytes",
        first.bytes.len()
    );

    let last = app
        .put(
            "/platform_components/shared?dry_run=true&changes_offset=200",
            &edit,
        )
        .await;
    let listed = last.json["changes"].as_array().unwrap();
    assert_eq!(listed.len(), 50);
    assert_eq!(listed[0]["cluster_dns"], "c000200.fleet.example.com");
    assert_eq!(last.json["truncated"], false);
    assert!(last.json["next_changes_offset"].is_null());

    // Disabling a component on a cluster is counted as such.
    let cluster = app.get("/clusters/c000001").await;
    let mut refs = cluster.json["platform_components"].clone();
    refs[0]["enabled"] = json!(false);
    let disable = app
        .put(
            "/clusters/c000001?dry_run=true",
            &json!({"platform_components": refs}),
        )
        .await;
    assert_eq!(disable.json["summary"][0]["disabled"], 1);
    assert_eq!(disable.json["changes"][0]["disabled"], json!(["shared"]));
    let stored = app.get("/platform_components/shared").await;
    assert_eq!(stored.json["oci_tag"], "1.0.0", "nothing was stored");
}

#[tokio::test]
async fn a_write_arriving_during_a_long_write_waits_its_turn_and_succeeds() {
    let app = TestApp::new();
    // Another write of this process holds the writer longer than SQLite's busy timeout (5 s).
    let long = {
        let store = app.store.clone();
        tokio::spawn(async move {
            store
                .write(|_tx| {
                    std::thread::sleep(Duration::from_millis(5_500));
                    Ok(())
                })
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let answer = app
        .put("/clusters/edge-qa-01", &json!({"cluster_name": "renamed"}))
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.json);
    assert!(long.is_finished(), "it waited for the long write");
    long.await.unwrap().unwrap();
    assert_eq!(
        app.get("/clusters/edge-qa-01").await.json["cluster_name"],
        "renamed"
    );
}

#[test]
fn a_large_file_is_imported_as_a_stream_clusters_before_their_catalog() {
    let dir = tempfile::tempdir().unwrap();
    let seed = dir.path().join("fleet.json");
    generated_seed(&seed, 20_000);
    let database = dir.path().join("inventory.db");
    let run = |args: &[&str]| crate::cli::run(&database, args);
    let imported = run(&["import", seed.to_str().unwrap()]);
    assert!(
        imported.status.success(),
        "{}",
        String::from_utf8_lossy(&imported.stderr)
    );
    let exported = run(&["export"]);
    let document: serde_json::Value = serde_json::from_slice(&exported.stdout).unwrap();
    assert_eq!(document["clusters"].as_array().unwrap().len(), 20_000);
    assert_eq!(
        document["clusters"][19_999]["patches"]["shared"]["replicas"],
        1 + 19_999 % 3
    );
    // Importing the same file again changes nothing; a dry run of a changed file says what.
    let again = run(&["import", "--dry-run", seed.to_str().unwrap()]);
    let preview: serde_json::Value = serde_json::from_slice(&again.stdout).unwrap();
    assert_eq!(preview["clusters_changed"], 0, "{preview}");
    let check = run(&["check"]);
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stdout)
    );
}
