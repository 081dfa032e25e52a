//! The offline commands of the binary: import, export, backup, check, openapi.

use std::path::Path;
use std::process::{Command, Output};

use flux_inputs::store::feeds::{self, Feed};
use flux_inputs::store::{Store, clusters};

use crate::cli::run as cli;
use crate::process::{BINARY, Server, get};

/// Runs an offline command of the binary on `database`.
pub fn run(database: &Path, args: &[&str]) -> Output {
    Command::new(BINARY)
        .env_clear()
        .env("DATABASE_PATH", database)
        .args(args)
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Every feed of every cluster, as served bytes.
async fn all_feeds(database: &Path) -> Vec<(String, Vec<u8>)> {
    let store = Store::open(database).unwrap();
    store
        .read(|conn| {
            let ids: Vec<String> = clusters::list_headers(conn, &Default::default())?
                .into_iter()
                .map(|c| c.id)
                .collect();
            let mut all = Vec::new();
            for id in ids {
                let cluster = clusters::get(conn, &id)?.unwrap();
                for feed in Feed::ALL {
                    let body = feeds::build(conn, &cluster, feed)?.body;
                    all.push((feed.path(&cluster.cluster_dns), body));
                }
            }
            Ok(all)
        })
        .await
        .unwrap()
}

#[tokio::test]
async fn export_then_import_into_an_empty_database_reproduces_every_feed() {
    let dir = tempfile::tempdir().unwrap();
    let original = dir.path().join("original.db");
    drop(Server::ready(&original, &[("AUTH_TOKEN", "t")])); // seeded with the demo
    let without = run(&original, &["export"]);
    assert!(
        !text(&without.stdout).contains("overlays"),
        "no overlays, no key: the file stays flux-resourceset's"
    );
    // An overlay, applied from a file as an operator would.
    let overlay = dir.path().join("prod-pins.json");
    std::fs::write(
        &overlay,
        r#"{"id": "prod-pins", "selector": {"environment": "prod"}, "priority": 5,
            "platform_components": [{"id": "traefik", "oci_tag": "32.1.0"},
                                    {"id": "podinfo", "enabled": true}],
            "patches": {"traefik": {"deployment.replicas": 4}}, "namespaces": ["apps"]}"#,
    )
    .unwrap();
    let file_arg = overlay.to_str().unwrap();
    let preview = run(
        &original,
        &["overlay", "apply", "-f", file_arg, "--dry-run"],
    );
    assert!(preview.status.success(), "{}", text(&preview.stderr));
    let preview: serde_json::Value = serde_json::from_slice(&preview.stdout).unwrap();
    assert_eq!(preview["clusters_changed"], 2, "{preview}");
    let applied = run(&original, &["overlay", "apply", "-f", file_arg]);
    assert!(applied.status.success(), "{}", text(&applied.stderr));
    assert!(text(&applied.stderr).contains("overlay 'prod-pins' stored"));
    let listed = text(&run(&original, &["overlay", "list"]).stdout);
    assert!(listed.contains(r#""clusters":2"#), "{listed}");
    let got = run(&original, &["overlay", "get", "prod-pins"]);
    assert!(text(&got.stdout).contains("32.1.0"));
    let missing = run(&original, &["overlay", "get", "nope"]);
    assert!(!missing.status.success());
    assert!(text(&missing.stderr).contains("overlay 'nope' not found"));

    let export = run(&original, &["export"]);
    assert!(export.status.success(), "{}", text(&export.stderr));
    assert!(text(&export.stdout).contains(r#""overlays""#));
    let file = dir.path().join("export.json");
    std::fs::write(&file, &export.stdout).unwrap();

    let copy = dir.path().join("copy.db");
    let import = run(&copy, &["import", file.to_str().unwrap()]);
    assert!(import.status.success(), "{}", text(&import.stderr));
    let feeds = all_feeds(&original).await;
    assert_eq!(feeds.len(), 12);
    assert_eq!(all_feeds(&copy).await, feeds, "byte for byte");
    assert_eq!(
        run(&copy, &["export"]).stdout,
        export.stdout,
        "export is stable"
    );
}

#[tokio::test]
async fn import_is_all_or_nothing_names_the_record_and_previews() {
    let dir = tempfile::tempdir().unwrap();
    let database = dir.path().join("inventory.db");
    drop(Server::ready(&database, &[("AUTH_TOKEN", "t")]));
    let before = all_feeds(&database).await;

    let bad = dir.path().join("bad.json");
    std::fs::write(
        &bad,
        r#"{"namespaces": [{"id": "fresh"}], "clusters": [{"_id": "x", "cluster_name": "x", "cluster_dns": "x.example.com",
            "environment": "dev", "platform_components": [{"id": "no-such-component", "enabled": true}]}]}"#,
    )
    .unwrap();
    let output = run(&database, &["import", bad.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(3), "invalid input");
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("clusters 'x'") && stderr.contains("no-such-component"),
        "{stderr}"
    );
    assert_eq!(
        all_feeds(&database).await,
        before,
        "nothing stored, not even the valid namespace"
    );

    let good = dir.path().join("good.json");
    std::fs::write(
        &good,
        r#"{"platform_components": [{"id": "traefik", "component_path": "traefik", "component_version": "34.0.0",
            "oci_url": "oci://ghcr.io/traefik/helm", "oci_tag": "34.0.0", "depends_on": ["cert-manager"], "cluster_env_enabled": true}]}"#,
    )
    .unwrap();
    let preview = run(&database, &["import", "--dry-run", good.to_str().unwrap()]);
    assert!(preview.status.success(), "{}", text(&preview.stderr));
    let json: serde_json::Value = serde_json::from_slice(&preview.stdout).unwrap();
    assert_eq!(
        json["changes"].as_array().unwrap().len(),
        4,
        "four clusters use traefik: {json}"
    );
    assert_eq!(
        all_feeds(&database).await,
        before,
        "a dry run stores nothing"
    );

    assert!(
        run(&database, &["import", good.to_str().unwrap()])
            .status
            .success()
    );
    let server = Server::ready(&database, &[("AUTH_TOKEN", "t")]);
    let (_, body) = get(
        server.port,
        "/api/v2/flux/clusters/edge-qa-01.k8s.example.com/platform-components",
        Some("t"),
    )
    .unwrap();
    assert!(body.contains(r#""oci_tag":"34.0.0""#), "replaced in place");
    let (_, body) = get(
        server.port,
        "/api/v2/flux/clusters/edge-qa-01.k8s.example.com/namespaces",
        Some("t"),
    )
    .unwrap();
    assert!(
        body.contains("monitoring"),
        "records not in the file are kept"
    );
}

#[test]
fn backup_while_serving_is_a_consistent_copy() {
    let dir = tempfile::tempdir().unwrap();
    let database = dir.path().join("inventory.db");
    let server = Server::ready(&database, &[("AUTH_TOKEN", "t"), ("API_MODE", "crud")]);
    let body = r#"{"id": "written-before-backup"}"#;
    assert_eq!(
        crate::process::request(server.port, "POST", "/namespaces", Some("t"), Some(body))
            .unwrap()
            .0,
        201
    );
    let target = dir.path().join("backup.db");
    let output = run(&database, &["backup", target.to_str().unwrap()]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let copy = rusqlite::Connection::open(&target).unwrap();
    let integrity: String = copy
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(integrity, "ok");
    let found: i64 = copy
        .query_row(
            "SELECT count(*) FROM namespaces WHERE id = 'written-before-backup'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(found, 1);
    let again = run(&database, &["backup", target.to_str().unwrap()]);
    assert_eq!(again.status.code(), Some(3), "never overwrites");
    assert_eq!(
        run(&dir.path().join("missing.db"), &["export"])
            .status
            .code(),
        Some(1),
        "no such database"
    );
}

#[test]
fn check_reports_warnings_and_problems_with_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let database = dir.path().join("inventory.db");
    drop(Server::ready(&database, &[("AUTH_TOKEN", "t")]));
    let clean = run(&database, &["check"]);
    assert!(clean.status.success(), "{}", text(&clean.stdout));
    assert!(
        text(&clean.stdout).contains("4 clusters checked, 0 problem(s), 0 warning(s)"),
        "{}",
        text(&clean.stdout)
    );

    // Edits behind the API's back: a dangling dependency and an oversized patch.
    let conn = rusqlite::Connection::open(&database).unwrap();
    conn.execute_batch(&format!(
        "UPDATE cluster_components SET enabled = 0 WHERE cluster_id = 'edge-prod-02' AND component_id = 'cert-manager';
         UPDATE cluster_patches SET patch = json_object('blob', '{}') WHERE cluster_id = 'lab-dev-01' AND component_id = 'podinfo';",
        "x".repeat(950_000)
    ))
    .unwrap();
    drop(conn);
    let output = run(&database, &["check"]);
    let stdout = text(&output.stdout);
    assert_eq!(output.status.code(), Some(3), "{stdout}");
    assert!(
        stdout.contains("warning: cluster 'edge-prod-02'") && stdout.contains("'cert-manager'"),
        "{stdout}"
    );
    assert!(
        stdout.contains("problem: cluster 'lab-dev-01'") && stdout.contains("platform-components"),
        "{stdout}"
    );
}

#[test]
fn openapi_prints_the_spec() {
    let output = Command::new(BINARY).arg("openapi").output().unwrap();
    assert!(output.status.success());
    assert_eq!(
        text(&output.stdout),
        flux_inputs::api::spec_yaml(flux_inputs::config::ApiMode::Crud)
    );
}

#[test]
fn audit_and_revert_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let database = dir.path().join("inventory.db");
    drop(Server::ready(&database, &[("AUTH_TOKEN", "t")]));
    let file = dir.path().join("change.json");
    std::fs::write(
        &file,
        r#"{"namespaces": [{"id": "apps", "labels": {"imported": "yes"}}]}"#,
    )
    .unwrap();
    assert!(
        run(&database, &["import", file.to_str().unwrap()])
            .status
            .success()
    );

    let output = run(&database, &["audit", "--kind", "namespaces"]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let entries: Vec<serde_json::Value> = text(&output.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(entries.len(), 1, "the import is audited");
    assert_eq!(entries[0]["method"], "IMPORT");
    assert_eq!(entries[0]["actor"], "import");
    assert_eq!(entries[0]["before"]["labels"]["team"], "product");
    assert_eq!(entries[0]["after"]["labels"]["imported"], "yes");

    let revision = entries[0]["revision"].as_i64().unwrap().to_string();
    let output = run(&database, &["revert", &revision]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let output = run(&database, &["export"]);
    let exported: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let apps = exported["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["id"] == "apps")
        .unwrap();
    assert_eq!(apps["labels"]["team"], "product", "reverted");
    let output = run(&database, &["audit", "--since", &revision]);
    assert!(
        text(&output.stdout).contains(r#""method":"REVERT""#)
            && text(&output.stdout).contains(r#""actor":"cli""#)
    );
    assert_eq!(
        run(&database, &["revert", "424242"]).status.code(),
        Some(3),
        "no such revision"
    );
}

/// Import takes the same checks as the API (control and bidirectional characters, chart tag
/// syntax), refuses a record listed twice, and reads a pipe or standard input.
#[test]
fn import_checks_what_the_api_checks_and_reads_a_pipe() {
    let dir = tempfile::tempdir().unwrap();
    let database = dir.path().join("inventory.db");
    drop(Server::ready(&database, &[("AUTH_TOKEN", "t")]));
    let import = |text: &str| {
        let file = dir.path().join("in.json");
        std::fs::write(&file, text).unwrap();
        run(&database, &["import", file.to_str().unwrap()])
    };
    let component = |id: &str, tag: &str, version: &str| {
        serde_json::json!({"id": id, "component_path": "p", "component_version": version,
            "oci_url": "oci://ghcr.io/x", "oci_tag": tag})
    };
    for (records, named) in [
        (vec![component("a", "1.0.0", "1.0\u{1b}[31m")], "U+001B"),
        (vec![component("a", "1.0.0", "1.0\u{202e}")], "U+202E"),
        (vec![component("a", "1.0\"; rm", "1.0")], "not a chart tag"),
        (
            vec![component("a", &"9".repeat(10_000), "1.0")],
            "not a chart tag",
        ),
        (
            vec![component("a", "1.0.0", "1"), component("a", "2.0.0", "2")],
            "more than once",
        ),
    ] {
        let seed = serde_json::json!({"platform_components": records}).to_string();
        let output = import(&seed);
        assert_eq!(output.status.code(), Some(3), "{seed}");
        assert!(
            text(&output.stderr).contains(named),
            "{}",
            text(&output.stderr)
        );
    }

    let seed = serde_json::json!({"platform_components": [component("piped", "1.0.0", "1.0.0")]});
    let mut child = std::process::Command::new(crate::process::BINARY)
        .env_clear()
        .env("DATABASE_PATH", &database)
        .args(["import", "-"])
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(seed.to_string().as_bytes())
            .unwrap();
    }
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "{}", text(&output.stderr));
    let output = run(&database, &["export"]);
    assert!(text(&output.stdout).contains("\"piped\""));
}

/// A dry run into a database that does not exist yet previews against an empty inventory and
/// creates no file.
#[test]
fn a_dry_run_import_creates_no_database() {
    let dir = tempfile::tempdir().unwrap();
    let database = dir.path().join("new.db");
    let seed = concat!(env!("CARGO_MANIFEST_DIR"), "/seed/demo.json");
    let preview = run(&database, &["import", "--dry-run", seed]);
    assert!(preview.status.success(), "{}", text(&preview.stderr));
    let json: serde_json::Value = serde_json::from_slice(&preview.stdout).unwrap();
    assert_eq!(json["dry_run"], true);
    assert_eq!(json["clusters_changed"], 4, "{json}");
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert!(left.is_empty(), "no file: {left:?}");
}

#[test]
fn backups_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let database = dir.path().join("inventory.db");
    drop(Server::ready(&database, &[("AUTH_TOKEN", "t")]));
    let target = dir.path().join("backup.db");
    assert!(
        cli(&database, &["backup", target.to_str().unwrap()])
            .status
            .success()
    );
    for file in [&database, &target] {
        let mode = std::fs::metadata(file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{}", file.display());
    }
}

#[tokio::test]
async fn a_freeze_holds_imports_and_reverts_until_confirmed_on_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let database = dir.path().join("inventory.db");
    drop(Server::ready(&database, &[("AUTH_TOKEN", "t")])); // seeded with the demo
    // A freeze of prod that is on now (the command line runs on the system's clock).
    let freeze = dir.path().join("freeze.json");
    std::fs::write(
        &freeze,
        r#"{"id": "freeze", "description": "prod is frozen", "kind": "deny",
            "selector": {"environment": "prod"},
            "absolute": {"from": "2000-01-01T00:00:00Z", "to": "2100-01-01T00:00:00Z"}}"#,
    )
    .unwrap();
    let applied = run(
        &database,
        &["window", "apply", "-f", freeze.to_str().unwrap()],
    );
    assert!(applied.status.success(), "{}", text(&applied.stderr));
    assert!(text(&applied.stderr).contains("window 'freeze' stored"));
    let listed = text(&run(&database, &["window", "list"]).stdout);
    assert!(
        listed.contains(r#""active":true"#) && listed.contains(r#""clusters":2"#),
        "{listed}"
    );
    let before = all_feeds(&database).await;

    // A catalog change reaching both prod clusters and two others.
    let catalog = dir.path().join("traefik.json");
    let mut export: serde_json::Value =
        serde_json::from_slice(&run(&database, &["export"]).stdout).unwrap();
    for component in export["platform_components"].as_array_mut().unwrap() {
        if component["id"] == "traefik" {
            component["oci_tag"] = "33.9.9".into();
        }
    }
    std::fs::write(&catalog, export.to_string()).unwrap();
    let refused = run(&database, &["import", catalog.to_str().unwrap()]);
    assert_eq!(refused.status.code(), Some(3));
    let stderr = text(&refused.stderr);
    assert!(
        stderr.contains("edge-prod-01 (freeze)") && stderr.contains("confirm_closed=2"),
        "{stderr}"
    );
    assert_eq!(all_feeds(&database).await, before, "nothing written");
    let confirmed = run(
        &database,
        &["import", catalog.to_str().unwrap(), "--confirm-closed", "2"],
    );
    assert!(confirmed.status.success(), "{}", text(&confirmed.stderr));
    assert_ne!(all_feeds(&database).await, before);

    // Undoing it changes the frozen clusters again: the revert asks too.
    let store = Store::open(&database).unwrap();
    let revision = store
        .read(|conn| {
            let entries = flux_inputs::store::audit::list(
                conn,
                &flux_inputs::store::audit::Filter {
                    kind: Some("platform_components".into()),
                    resource_id: Some("traefik".into()),
                    ..Default::default()
                },
            )?;
            Ok(entries
                .last()
                .map(|e| (e.revision, e.window_override.clone())))
        })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        revision.1.unwrap()["clusters"],
        2,
        "the override is on record"
    );
    drop(store);
    let number = revision.0.to_string();
    let refused = run(&database, &["revert", &number]);
    assert_eq!(refused.status.code(), Some(3), "{}", text(&refused.stderr));
    let reverted = run(&database, &["revert", &number, "--confirm-closed", "2"]);
    assert!(reverted.status.success(), "{}", text(&reverted.stderr));
    assert_eq!(all_feeds(&database).await, before);
}
