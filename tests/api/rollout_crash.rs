//! A rollout survives SIGKILL: the real binary runs a rollout while a simulated fleet polls
//! and reports; the process is killed at random moments over several rounds and started
//! again; the rollout must finish with every feed as planned and no step applied twice.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use crate::process::{Rng, Server, get, request};

const ROUNDS: usize = 5;
const TOKEN: &str = "t";
const ENVS: [(&str, &str); 3] = [
    ("AUTH_TOKEN", TOKEN),
    ("API_MODE", "crud"),
    ("SEED_FILE", "fleet.json"),
];
const OLD: &str = "1.0.0";
const NEW: &str = "2.0.0";

/// 4 dev, 4 qa, 14 prod (2 of them canaries), 2 uat (no wave selects them), 1 pinned prod.
fn fleet() -> (Value, Vec<(String, &'static str)>) {
    let mut members: Vec<(String, &'static str)> = Vec::new();
    for (env, n) in [("dev", 4), ("qa", 4), ("prod", 14), ("uat", 2)] {
        for i in 0..n {
            members.push((format!("{env}-{i:02}"), env));
        }
    }
    let clusters: Vec<Value> = members
        .iter()
        .chain([&("prod-pinned".to_owned(), "prod")])
        .map(|(id, env)| {
            let canary = id == "prod-00" || id == "prod-01";
            let pinned = id == "prod-pinned";
            json!({
                "id": id, "cluster_name": id, "cluster_dns": format!("{id}.edge.example"),
                "environment": env,
                "labels": if canary { json!({"canary": "true"}) } else { json!({}) },
                "platform_components": [{"id": "app", "enabled": true,
                    "oci_tag": if pinned { json!("0.9.0") } else { Value::Null },
                    "component_path": null}],
            })
        })
        .collect();
    let seed = json!({
        "platform_components": [{"id": "app", "component_path": "app", "component_version": OLD,
            "oci_url": "oci://registry.example/charts", "oci_tag": OLD, "depends_on": [],
            "cluster_env_enabled": false}],
        "namespaces": [], "rolebindings": [], "clusters": clusters,
    });
    (seed, members)
}

fn event(reason: &str, revision: &str) -> String {
    let at = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    json!({
        "involvedObject": {"kind": "HelmRelease", "namespace": "flux-system", "name": "app"},
        "severity": "info",
        "timestamp": flux_inputs::domain::report::format_timestamp(at),
        "message": format!("Helm upgrade succeeded for release app with chart app@{revision}"),
        "reason": reason,
        "metadata": {"component": "app", "revision": revision},
    })
    .to_string()
}

/// What every cluster's Flux does while the server is up: poll its feed, and once the feed
/// says the target, report the upgrade as helm-controller would.
fn simulate(port: u16, members: &[(String, &'static str)], stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        for (id, _) in members {
            let dns = format!("{id}.edge.example");
            let Ok((200, body)) = get(
                port,
                &format!("/api/v2/flux/clusters/{dns}/platform-components"),
                Some(TOKEN),
            ) else {
                return;
            };
            let feed: Value = serde_json::from_str(&body).unwrap_or_default();
            let tag = feed["inputs"][0]["source"]["oci_tag"]
                .as_str()
                .unwrap_or("");
            if tag == NEW {
                let path = format!("/api/v2/flux/clusters/{dns}/events");
                if request(
                    port,
                    "POST",
                    &path,
                    Some(TOKEN),
                    Some(&event("UpgradeSucceeded", NEW)),
                )
                .is_err()
                {
                    return;
                }
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn rollout_state(port: u16) -> Option<Value> {
    match get(port, "/rollouts/app-v2", Some(TOKEN)) {
        Ok((200, body)) => serde_json::from_str(&body).ok(),
        _ => None,
    }
}

#[test]
fn a_rollout_resumes_after_sigkill_and_applies_every_step_once() {
    let seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    eprintln!("rollout crash test seed {seed}");
    let mut rng = Rng::new(seed);
    let dir = tempfile::tempdir().unwrap();
    let (fleet_file, members) = fleet();
    std::fs::write(dir.path().join("fleet.json"), fleet_file.to_string()).unwrap();
    let database = dir.path().join("inventory.db");
    let envs: Vec<(&str, String)> = ENVS
        .iter()
        .map(|(k, v)| {
            let v = if *k == "SEED_FILE" {
                dir.path().join(v).display().to_string()
            } else {
                (*v).to_owned()
            };
            (*k, v)
        })
        .collect();
    let envs: Vec<(&str, &str)> = envs.iter().map(|(k, v)| (*k, v.as_str())).collect();

    // First start: every cluster polls once, the rollout is planned and started, and a
    // clean stop writes the poll times (they are flushed in batches).
    let mut server = Server::ready(&database, &envs);
    for (id, _) in &members {
        get(
            server.port,
            &format!("/api/v2/flux/clusters/{id}.edge.example/platform-components"),
            Some(TOKEN),
        )
        .unwrap();
    }
    let spec = json!({
        "id": "app-v2", "component": "app", "target": {"oci_tag": NEW},
        "waves": [{"environment": "dev"}, {"labels": {"canary": "true"}}, {"environment": "qa"},
                  {"environment": "prod", "batch": 4}],
        "gate": "reported", "bake_seconds": 3, "wave_timeout_seconds": 600
    });
    let (status, body) = request(
        server.port,
        "POST",
        "/rollouts",
        Some(TOKEN),
        Some(&spec.to_string()),
    )
    .unwrap();
    assert_eq!(status, 201, "{body}");
    server.signal("-TERM");
    server.wait_exit(Duration::from_secs(20));
    drop(server);

    let (mut kills, mut killed_running) = (0, 0);
    let deadline = Instant::now() + Duration::from_secs(150);
    loop {
        let server = Server::ready(&database, &envs);
        if kills == 0 {
            let (status, body) = request(
                server.port,
                "POST",
                "/rollouts/app-v2/start",
                Some(TOKEN),
                None,
            )
            .unwrap();
            assert_eq!(status, 200, "{body}");
        }
        let stop = Arc::new(AtomicBool::new(false));
        let simulator = {
            let (stop, members, port) = (stop.clone(), members.clone(), server.port);
            std::thread::spawn(move || simulate(port, &members, &stop))
        };
        if kills < ROUNDS {
            std::thread::sleep(Duration::from_millis(800 + rng.below(3200)));
            let seen = rollout_state(server.port);
            server.signal("-KILL");
            let step = seen.as_ref().map(|r| r["current_step"].clone());
            eprintln!("kill {kills} at step {step:?}");
            if seen.is_some_and(|r| r["state"] == "running") {
                killed_running += 1;
            }
            kills += 1;
            stop.store(true, Ordering::Relaxed);
            simulator.join().unwrap();
            drop(server);
            let conn = rusqlite::Connection::open(&database).unwrap();
            let integrity: String = conn
                .query_row("PRAGMA integrity_check", [], |r| r.get(0))
                .unwrap();
            assert_eq!(integrity, "ok", "after kill {kills}");
            continue;
        }
        // After the last kill: let it finish.
        let finished = loop {
            assert!(
                Instant::now() < deadline,
                "the rollout finishes: {:?}",
                rollout_state(server.port)
            );
            match rollout_state(server.port) {
                Some(r) if r["state"] == "running" => {}
                Some(r) => break r,
                None => {}
            }
            std::thread::sleep(Duration::from_millis(200));
        };
        stop.store(true, Ordering::Relaxed);
        simulator.join().unwrap();
        assert_eq!(finished["state"], "succeeded", "{finished}");
        check_outcome(server.port, &members, &finished);
        break;
    }
    eprintln!("rollout finished after {kills} SIGKILLs");
    assert!(
        killed_running >= 3,
        "most kills hit the running rollout ({killed_running})"
    );
}

/// The model of this fleet's rollout: every selected cluster on the catalog's new tag, the
/// uat clusters kept on the old one, the pinned one untouched; each step started once and
/// each moved cluster written exactly twice by the rollout (its step, the promotion).
fn check_outcome(port: u16, members: &[(String, &'static str)], finished: &Value) {
    for (id, env) in members {
        let (_, body) = get(
            port,
            &format!("/api/v2/flux/clusters/{id}.edge.example/platform-components"),
            Some(TOKEN),
        )
        .unwrap();
        let feed: Value = serde_json::from_str(&body).unwrap();
        let expected = if *env == "uat" { OLD } else { NEW };
        assert_eq!(feed["inputs"][0]["source"]["oci_tag"], expected, "{id}");
    }
    let (_, body) = get(
        port,
        "/api/v2/flux/clusters/prod-pinned.edge.example/platform-components",
        Some(TOKEN),
    )
    .unwrap();
    assert!(body.contains("\"oci_tag\":\"0.9.0\""), "{body}");
    let (_, catalog) = get(port, "/platform_components/app", Some(TOKEN)).unwrap();
    assert!(
        catalog.contains(&format!("\"oci_tag\":\"{NEW}\"")),
        "{catalog}"
    );

    let steps = finished["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 6, "dev, canary, qa, prod in 3 batches of 4");
    let reasons: Vec<&str> = finished["transitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["reason"].as_str().unwrap())
        .collect();
    for step in 0..steps.len() {
        let started = reasons
            .iter()
            .filter(|r| r.starts_with(&format!("step {step} (wave")))
            .count();
        assert_eq!(started, 1, "step {step} started once: {reasons:#?}");
    }
    assert_eq!(
        reasons.iter().filter(|r| r.starts_with("promoted")).count(),
        1
    );
    let (_, audit) = get(port, "/audit?since_revision=0", Some(TOKEN)).unwrap();
    let audit: Value = serde_json::from_str(&audit).unwrap();
    for (id, env) in members {
        let writes = audit
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["actor"] == "rollout:app-v2" && e["after"].get(id.as_str()).is_some())
            .count();
        // Moved clusters: their step and the promotion; uat clusters: the promotion pins them.
        let expected = if *env == "uat" { 1 } else { 2 };
        assert_eq!(writes, expected, "audit writes by the rollout for {id}");
    }
}
