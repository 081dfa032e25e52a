//! A property test of the rollout controller: random fleets, wave selectors, failure
//! policies and per-cluster report scripts, run through the whole stack (HTTP, SQLite, the
//! controller on a test clock), against a small reference model of the rollout state machine.

use std::collections::BTreeMap;

use proptest::prelude::*;
use serde_json::{Value, json};

use flux_inputs::config::SeedSource;

use crate::helpers::{READ, TestApp};

const CASES: u32 = 64;
const OLD: &str = "1.0.0";
const NEW: &str = "2.0.0";
const PINNED_TAG: &str = "0.9.0";
const BAKE: i64 = 5;
const TIMEOUT: i64 = 30;

const ENVIRONMENTS: [&str; 4] = ["dev", "qa", "uat", "prod"];

/// What a cluster's Flux does once it has the target.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Script {
    Converge,
    Fail,
    /// Never reports: a failure once `wave_timeout_seconds` is over.
    Silent,
}

#[derive(Debug, Clone)]
struct Member {
    environment: &'static str,
    canary: bool,
    region: &'static str,
    pinned: bool,
    enabled: bool,
    stale: bool,
    script: Script,
}

#[derive(Debug, Clone)]
struct Wave {
    environment: Option<&'static str>,
    labels: BTreeMap<&'static str, &'static str>,
    clusters: Vec<usize>,
    batch: Option<usize>,
}

#[derive(Debug, Clone)]
struct Case {
    members: Vec<Member>,
    waves: Vec<Wave>,
    max_failures: usize,
    rollback: bool,
    include_pinned: bool,
}

fn id(index: usize) -> String {
    format!("c{index:02}")
}

fn member() -> impl Strategy<Value = Member> {
    (
        prop::sample::select(ENVIRONMENTS.to_vec()),
        prop::bool::weighted(0.25),
        prop::sample::select(vec!["eu", "us"]),
        prop::bool::weighted(0.15),
        prop::bool::weighted(0.95),
        prop::bool::weighted(0.15),
        prop::sample::select(vec![
            Script::Converge,
            Script::Converge,
            Script::Converge,
            Script::Converge,
            Script::Fail,
            Script::Silent,
        ]),
    )
        .prop_map(
            |(environment, canary, region, pinned, enabled, stale, script)| Member {
                environment,
                canary,
                region,
                pinned,
                enabled,
                stale,
                script,
            },
        )
}

fn wave(clusters: usize) -> impl Strategy<Value = Wave> {
    let env = || prop::sample::select(ENVIRONMENTS.to_vec());
    let labels = || {
        prop_oneof![
            Just(BTreeMap::from([("canary", "true")])),
            Just(BTreeMap::from([("region", "eu")])),
        ]
    };
    let selector = prop_oneof![
        3 => env().prop_map(|e| (Some(e), BTreeMap::new(), Vec::new())),
        1 => labels().prop_map(|l| (None, l, Vec::new())),
        1 => prop::collection::vec(0..clusters, 1..3).prop_map(|ids| (None, BTreeMap::new(), ids)),
        1 => (env(), labels()).prop_map(|(e, l)| (Some(e), l, Vec::new())),
    ];
    (selector, prop::option::weighted(0.4, 1..4usize)).prop_map(
        |((environment, labels, mut clusters), batch)| {
            clusters.sort();
            clusters.dedup();
            Wave {
                environment,
                labels,
                clusters,
                batch,
            }
        },
    )
}

fn case() -> impl Strategy<Value = Case> {
    prop::collection::vec(member(), 3..12).prop_flat_map(|members| {
        let n = members.len();
        (
            Just(members),
            prop::collection::vec(wave(n), 1..4),
            0..2usize,
            any::<bool>(),
            prop::bool::weighted(0.2),
        )
            .prop_map(
                |(members, waves, max_failures, rollback, include_pinned)| Case {
                    members,
                    waves,
                    max_failures,
                    rollback,
                    include_pinned,
                },
            )
    })
}

/// What the model says a case ends as.
#[derive(Debug, PartialEq)]
enum Expected {
    /// 422: no wave selects a cluster to move, or a wave names a cluster not in scope.
    Refused,
    /// The final state, and each cluster's effective `oci_tag` afterwards.
    Ended(&'static str, Vec<String>),
}

impl Wave {
    fn selects(&self, index: usize, m: &Member) -> bool {
        self.environment.is_none_or(|e| e == m.environment)
            && self.labels.iter().all(|(k, v)| match *k {
                "canary" => m.canary && *v == "true",
                "region" => m.region == *v,
                _ => false,
            })
            && (self.clusters.is_empty() || self.clusters.contains(&index))
    }
}

/// The reference model: plan, then step by step count failures (failed or silent clusters
/// that were moved; stale ones are skipped), stop at the first step with more than
/// `max_failures`, else promote.
fn model(case: &Case) -> Expected {
    let in_scope = |i: usize| case.members[i].enabled;
    if case
        .waves
        .iter()
        .any(|w| w.clusters.iter().any(|&i| !in_scope(i)))
    {
        return Expected::Refused;
    }
    let mut by_wave: Vec<Vec<usize>> = vec![Vec::new(); case.waves.len()];
    for (i, m) in case.members.iter().enumerate() {
        if !m.enabled || (m.pinned && !case.include_pinned) {
            continue;
        }
        if let Some(w) = case.waves.iter().position(|w| w.selects(i, m)) {
            by_wave[w].push(i);
        }
    }
    let mut steps: Vec<Vec<usize>> = Vec::new();
    for (w, clusters) in by_wave.into_iter().enumerate() {
        let batch = case.waves[w].batch.unwrap_or(clusters.len().max(1));
        steps.extend(clusters.chunks(batch).map(<[usize]>::to_vec));
    }
    if steps.is_empty() {
        return Expected::Refused;
    }
    let before: Vec<String> = case
        .members
        .iter()
        .map(|m| if m.pinned { PINNED_TAG } else { OLD }.to_owned())
        .collect();
    let mut now = before.clone();
    for step in &steps {
        let moved: Vec<usize> = step
            .iter()
            .copied()
            .filter(|&i| !case.members[i].stale)
            .collect();
        for &i in &moved {
            now[i] = NEW.to_owned();
        }
        let failures = moved
            .iter()
            .filter(|&&i| case.members[i].script != Script::Converge)
            .count();
        if failures > case.max_failures {
            return if case.rollback {
                Expected::Ended("rolled_back", before)
            } else {
                Expected::Ended("paused", now)
            };
        }
    }
    Expected::Ended("succeeded", now)
}

fn seed(case: &Case) -> Value {
    let clusters: Vec<Value> = case
        .members
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let mut labels = json!({"region": m.region});
            if m.canary {
                labels["canary"] = json!("true");
            }
            json!({
                "id": id(i), "cluster_name": id(i), "cluster_dns": format!("{}.model.example", id(i)),
                "environment": m.environment, "labels": labels,
                "platform_components": [{"id": "app", "enabled": m.enabled,
                    "oci_tag": if m.pinned { json!(PINNED_TAG) } else { Value::Null },
                    "component_path": null}],
            })
        })
        .collect();
    json!({
        "platform_components": [{"id": "app", "component_path": "app", "component_version": OLD,
            "oci_url": "oci://registry.example/charts", "oci_tag": OLD, "depends_on": [],
            "cluster_env_enabled": false}],
        "namespaces": [], "rolebindings": [], "clusters": clusters,
    })
}

fn spec(case: &Case) -> Value {
    let waves: Vec<Value> = case
        .waves
        .iter()
        .map(|w| {
            let mut wave = json!({});
            if let Some(e) = w.environment {
                wave["environment"] = json!(e);
            }
            if !w.labels.is_empty() {
                wave["labels"] = json!(w.labels);
            }
            if !w.clusters.is_empty() {
                wave["clusters"] = json!(w.clusters.iter().map(|&i| id(i)).collect::<Vec<_>>());
            }
            if let Some(b) = w.batch {
                wave["batch"] = json!(b);
            }
            wave
        })
        .collect();
    json!({
        "id": "model", "component": "app", "target": {"oci_tag": NEW}, "waves": waves,
        "gate": "reported", "bake_seconds": BAKE, "wave_timeout_seconds": TIMEOUT,
        "max_failures": case.max_failures,
        "on_failure": if case.rollback { "rollback" } else { "pause" },
        "include_pinned": case.include_pinned,
    })
}

async fn run(case: &Case, app: &TestApp) -> Expected {
    for (i, m) in case.members.iter().enumerate() {
        if !m.stale {
            let path = format!(
                "/api/v2/flux/clusters/{}.model.example/platform-components",
                id(i)
            );
            assert_eq!(app.get(&path).await.status, 200);
        }
    }
    let created = app.post("/rollouts", &spec(case)).await;
    if created.status == 422 {
        return Expected::Refused;
    }
    assert_eq!(created.status, 201, "{}", created.json);
    let started = crate::rollouts::verb(app, "model", "start").await;
    assert_eq!(started.status, 200, "{}", started.json);
    let mut t = crate::rollouts::now();
    let mut state = String::new();
    for _ in 0..200 {
        flux_inputs::controller::advance_rollouts(&app.store, t)
            .await
            .unwrap();
        t += 7;
        let r = app.get("/rollouts/model").await.json;
        state = r["state"].as_str().unwrap().to_owned();
        if state != "running" {
            break;
        }
        for cluster in crate::rollouts::in_state(&r, "progressing") {
            let index: usize = cluster[1..].parse().unwrap();
            let reason = match case.members[index].script {
                Script::Converge => "UpgradeSucceeded",
                Script::Fail => "UpgradeFailed",
                Script::Silent => continue,
            };
            let event = json!({
                "involvedObject": {"kind": "HelmRelease", "namespace": "flux-system", "name": "app"},
                "severity": if reason == "UpgradeFailed" { "error" } else { "info" },
                "timestamp": flux_inputs::domain::report::format_timestamp(crate::rollouts::now()),
                "message": reason, "reason": reason,
                "metadata": {"component": "app", "revision": NEW},
            });
            let path = format!("/api/v2/flux/clusters/{cluster}.model.example/events");
            let answer = app
                .call(poem::http::Method::POST, &path, Some(READ), Some(&event))
                .await;
            assert_eq!(answer.status, 202);
        }
    }
    let catalog = app.get("/platform_components/app").await.json;
    let mut tags = Vec::new();
    for i in 0..case.members.len() {
        let cluster = app.get(&format!("/clusters/{}", id(i))).await.json;
        let own = &cluster["platform_components"][0]["oci_tag"];
        let effective = own.as_str().or(catalog["oci_tag"].as_str()).unwrap();
        tags.push(effective.to_owned());
    }
    let state: &'static str = match state.as_str() {
        "succeeded" => "succeeded",
        "paused" => "paused",
        "rolled_back" => "rolled_back",
        other => panic!("the rollout ended {other}"),
    };
    Expected::Ended(state, tags)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: CASES, ..ProptestConfig::default() })]

    #[test]
    fn rollouts_end_as_the_reference_model_says(case in case()) {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("seed.json");
        std::fs::write(&file, seed(&case).to_string()).unwrap();
        let app = TestApp::configured(|config| config.seed = SeedSource::File(file));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let actual = runtime.block_on(run(&case, &app));
        prop_assert_eq!(actual, model(&case));
    }
}
