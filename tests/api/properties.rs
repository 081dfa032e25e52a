//! Property tests over random inventories, through the whole stack: the inventory (catalog,
//! overlays with random selectors, labelled clusters) is loaded as a seed into a real SQLite
//! file and read back through the HTTP API. Every feed must pass Flux's client checks, be
//! identical across identical reads, and equal what a plain reference model computes from
//! the same inventory: the layering of README "Overlays" written out on JSON, field by field.

use proptest::prelude::*;
use serde_json::{Map, Value, json};

use flux_inputs::config::{ApiMode, SeedSource};

use crate::helpers::{TestApp, assert_flux_accepts};

const CASES: u32 = 48;

/// A generated inventory, kept as the JSON documents the API speaks.
#[derive(Debug, Clone)]
struct Inventory {
    components: Vec<Value>,
    namespaces: Vec<Value>,
    rolebindings: Vec<Value>,
    overlays: Vec<Value>,
    clusters: Vec<Value>,
}

/// Labels drawn from a small set, so selectors often match.
fn labels() -> impl Strategy<Value = Value> {
    prop::collection::btree_map("(tier|region)", "(edge|eu)", 0..3)
        .prop_map(|m| Value::Object(m.into_iter().map(|(k, v)| (k, Value::from(v))).collect()))
}

fn patch() -> impl Strategy<Value = Map<String, Value>> {
    prop::collection::btree_map("[a-z.]{1,8}", json_value(), 0..3)
        .prop_filter("no patch key inside another (refused with 422)", |patch| {
            !patch
                .keys()
                .any(|a| patch.keys().any(|b| a != b && inside(a, b)))
        })
        .prop_map(|m| m.into_iter().collect())
}

fn overlay(
    index: usize,
    components: usize,
    namespaces: usize,
    rolebindings: usize,
) -> impl Strategy<Value = Value> {
    let entry = (
        prop::option::of(any::<bool>()),
        prop::option::of("[a-z0-9][a-z0-9.]{0,5}"),
        prop::option::of("[a-z/]{1,8}"),
    );
    (
        prop::option::of(0..4usize),
        labels(),
        -1..2i64,
        prop::sample::subsequence((0..components).collect::<Vec<_>>(), 0..=components),
        prop::collection::vec(entry, components),
        prop::collection::vec(prop::option::of(patch()), components),
        prop::sample::subsequence((0..namespaces).collect::<Vec<_>>(), 0..=namespaces),
        prop::sample::subsequence((0..rolebindings).collect::<Vec<_>>(), 0..=rolebindings),
    )
        .prop_map(
            move |(env, labels, priority, chosen, entries, patches, ns, rbs)| {
                let mut selector = json!({"labels": labels});
                if let Some(env) = env {
                    selector["environment"] = json!(["dev", "qa", "uat", "prod"][env]);
                }
                let platform_components: Vec<Value> = chosen
                    .iter()
                    .map(|c| {
                        let (enabled, tag, path) = &entries[*c];
                        let mut entry = json!({"id": format!("comp-{c}")});
                        for (key, value) in [
                            ("enabled", enabled.map(Value::from)),
                            ("oci_tag", tag.clone().map(Value::from)),
                            ("component_path", path.clone().map(Value::from)),
                        ] {
                            if let Some(value) = value {
                                entry[key] = value;
                            }
                        }
                        entry
                    })
                    .collect();
                let patches: Map<String, Value> = patches
                    .into_iter()
                    .enumerate()
                    .filter_map(|(c, p)| p.map(|p| (format!("comp-{c}"), Value::Object(p))))
                    .collect();
                json!({"id": format!("overlay-{index}"), "selector": selector, "priority": priority,
                       "platform_components": platform_components, "patches": patches,
                       "namespaces": ns.iter().map(|n| format!("ns-{n}")).collect::<Vec<_>>(),
                       "rolebindings": rbs.iter().map(|r| format!("rb-{r}")).collect::<Vec<_>>()})
            },
        )
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        any::<bool>().prop_map(Value::from),
        any::<i32>().prop_map(Value::from),
        "[ -~]{0,12}".prop_map(Value::from),
        Just(Value::Null),
    ];
    leaf.prop_recursive(2, 8, 3, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3).prop_map(Value::from),
            prop::collection::btree_map("[a-z]{1,5}", inner, 0..3)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn component(index: usize) -> impl Strategy<Value = Value> {
    (
        prop::sample::subsequence((0..index).collect::<Vec<_>>(), 0..=index.min(3)),
        "[a-z0-9/.-]{1,12}",
        "[a-z0-9][a-z0-9.]{0,7}",
        any::<bool>(),
    )
        .prop_map(move |(deps, path, tag, env)| {
            json!({"id": format!("comp-{index}"), "component_path": path, "component_version": tag,
                   "oci_url": format!("oci://registry.example.com/comp-{index}"), "oci_tag": tag,
                   "depends_on": deps.iter().map(|d| format!("comp-{d}")).collect::<Vec<_>>(),
                   "cluster_env_enabled": env})
        })
}

fn namespace(index: usize) -> impl Strategy<Value = Value> {
    (
        prop::collection::btree_map("(app|team|tier|example\\.com/owner)", "[a-z0-9]{0,6}", 0..3),
        prop::collection::btree_map("[a-z]{1,6}(\\.io/[a-z]{1,4})?", "[ -~]{0,20}", 0..3),
    )
        .prop_map(move |(labels, annotations)| json!({"id": format!("ns-{index}"), "labels": labels, "annotations": annotations}))
}

fn rolebinding(index: usize) -> impl Strategy<Value = Value> {
    let subject =
        (0..3usize, "[a-z@.]{1,10}", any::<bool>()).prop_map(|(kind, name, extra)| match kind {
            0 => json!({"kind": "User", "name": name, "apiGroup": "rbac.authorization.k8s.io"}),
            1 if extra => {
                json!({"kind": "Group", "name": name, "apiGroup": "rbac.authorization.k8s.io"})
            }
            1 => json!({"kind": "Group", "name": name}),
            _ => json!({"kind": "ServiceAccount", "name": name, "namespace": "ci"}),
        });
    ("(view|edit|admin)", prop::collection::vec(subject, 0..3))
        .prop_map(move |(role, subjects)| json!({"id": format!("rb-{index}"), "role": role, "subjects": subjects}))
}

fn cluster(
    index: usize,
    components: usize,
    namespaces: usize,
    rolebindings: usize,
) -> impl Strategy<Value = Value> {
    let reference = (
        any::<bool>(),
        prop::option::of("[a-z0-9][a-z0-9.]{0,5}"),
        prop::option::of("[a-z/]{1,8}"),
    );
    (
        Just((0..components).collect::<Vec<_>>()).prop_shuffle().prop_flat_map(move |order| {
            let n = order.len();
            (Just(order), 0..=n)
        }),
        prop::collection::vec(reference, components),
        prop::collection::vec(patch(), components),
        Just((0..namespaces).collect::<Vec<_>>()).prop_shuffle(),
        0..=namespaces,
        prop::sample::subsequence((0..rolebindings).collect::<Vec<_>>(), 0..=rolebindings),
        (0..4usize, labels()),
    )
        .prop_map(move |((order, take), refs, patches, ns_order, ns_take, rbs, (env, labels))| {
            let chosen: Vec<usize> = order.into_iter().take(take).collect();
            let platform_components: Vec<Value> = chosen
                .iter()
                .map(|c| {
                    let (enabled, tag, path) = &refs[*c];
                    json!({"id": format!("comp-{c}"), "enabled": enabled, "oci_tag": tag, "component_path": path})
                })
                .collect();
            let mut patch_map = Map::new();
            for c in chosen.iter().filter(|c| *c % 2 == 0) {
                patch_map.insert(format!("comp-{c}"), Value::Object(patches[*c].clone().into_iter().collect()));
            }
            let environment = ["dev", "qa", "uat", "prod"][env];
            json!({
                "id": format!("cluster-{index}"), "cluster_name": format!("Cluster {index}"),
                "cluster_dns": format!("cluster-{index}.fleet.example.com"),
                "environment": environment,
                "labels": labels,
                "platform_components": platform_components,
                "namespaces": ns_order.into_iter().take(ns_take).map(|n| json!({"id": format!("ns-{n}")})).collect::<Vec<_>>(),
                "rolebindings": rbs.into_iter().map(|r| json!({"id": format!("rb-{r}")})).collect::<Vec<_>>(),
                "patches": patch_map,
            })
        })
}

fn inventory() -> impl Strategy<Value = Inventory> {
    (1..6usize, 0..4usize, 0..3usize, 1..4usize, 0..4usize).prop_flat_map(|(nc, nn, nr, nk, no)| {
        (
            (0..nc).map(component).collect::<Vec<_>>(),
            (0..nn).map(namespace).collect::<Vec<_>>(),
            (0..nr).map(rolebinding).collect::<Vec<_>>(),
            (0..no).map(|o| overlay(o, nc, nn, nr)).collect::<Vec<_>>(),
            (0..nk).map(|k| cluster(k, nc, nn, nr)).collect::<Vec<_>>(),
        )
            .prop_map(
                |(components, namespaces, rolebindings, overlays, clusters)| Inventory {
                    components,
                    namespaces,
                    rolebindings,
                    overlays,
                    clusters,
                },
            )
    })
}

fn find<'a>(list: &'a [Value], id: &Value) -> &'a Value {
    list.iter()
        .find(|item| item["id"] == *id)
        .expect("generated references exist")
}

/// Whether patch key `inner` names a value inside `outer` (`a` and `a.b`).
fn inside(outer: &str, inner: &str) -> bool {
    let (outer, inner): (Vec<&str>, Vec<&str>) =
        (outer.split('.').collect(), inner.split('.').collect());
    inner.len() > outer.len() && inner[..outer.len()] == outer[..]
}

/// A patch's dotted keys as nested objects (the generated keys have no `\.` escapes).
fn typed_values(patch: &Value) -> Value {
    let mut root = json!({});
    for (key, value) in patch.as_object().unwrap() {
        let path: Vec<&str> = key.split('.').collect();
        let mut node = &mut root;
        for segment in &path[..path.len() - 1] {
            node = node
                .as_object_mut()
                .unwrap()
                .entry(segment.to_string())
                .or_insert_with(|| json!({}));
        }
        node[path[path.len() - 1]] = value.clone();
    }
    root
}

/// The overlays that match `cluster`, lowest layer first (priority, then id).
fn matching<'a>(inv: &'a Inventory, cluster: &Value) -> Vec<&'a Value> {
    let mut found: Vec<&Value> = inv
        .overlays
        .iter()
        .filter(|o| {
            let selector = &o["selector"];
            let env_ok = selector["environment"].is_null()
                || selector["environment"] == cluster["environment"];
            let labels_ok = selector["labels"]
                .as_object()
                .unwrap()
                .iter()
                .all(|(k, v)| cluster["labels"].get(k) == Some(v));
            env_ok && labels_ok
        })
        .collect();
    found.sort_by_key(|o| {
        (
            o["priority"].as_i64().unwrap(),
            o["id"].as_str().unwrap().to_owned(),
        )
    });
    found
}

/// A higher layer's patch key: a value replaces every key it overlaps, `null` removes the key
/// and the keys inside it.
fn set_key(patch: &mut Map<String, Value>, key: &str, value: &Value) {
    patch.retain(|k, _| {
        let overlaps = k == key || inside(key, k) || (!value.is_null() && inside(k, key));
        !overlaps
    });
    if !value.is_null() {
        patch.insert(key.to_owned(), value.clone());
    }
}

/// The cluster as its feeds serve it: README "Overlays" applied to the JSON documents.
fn layered(inv: &Inventory, cluster: &Value) -> Value {
    let overlays = matching(inv, cluster);
    let own = cluster["platform_components"].as_array().unwrap();
    let mut ids: Vec<Value> = own.iter().map(|r| r["id"].clone()).collect();
    for overlay in &overlays {
        for entry in overlay["platform_components"].as_array().unwrap() {
            if !entry["enabled"].is_null() && !ids.contains(&entry["id"]) {
                ids.push(entry["id"].clone());
            }
        }
    }
    let mut refs = Vec::new();
    let mut patches = Map::new();
    for id in &ids {
        let mine = own.iter().find(|r| r["id"] == *id);
        let key = id.as_str().unwrap();
        let (mut enabled, mut tag, mut path) = (json!(true), Value::Null, Value::Null);
        let mut patch = Map::new();
        let mut patched = cluster["patches"].get(key).is_some();
        for overlay in &overlays {
            if let Some(entry) = overlay["platform_components"]
                .as_array()
                .unwrap()
                .iter()
                .find(|e| e["id"] == *id)
            {
                for (field, slot) in [
                    ("enabled", &mut enabled),
                    ("oci_tag", &mut tag),
                    ("component_path", &mut path),
                ] {
                    if !entry[field].is_null() {
                        *slot = entry[field].clone();
                    }
                }
            }
            if let Some(p) = overlay["patches"].get(key) {
                for (k, v) in p.as_object().unwrap() {
                    set_key(&mut patch, k, v);
                }
                patched |= !patch.is_empty();
            }
        }
        if let Some(mine) = mine {
            enabled = mine["enabled"].clone();
            for (field, slot) in [("oci_tag", &mut tag), ("component_path", &mut path)] {
                if !mine[field].is_null() {
                    *slot = mine[field].clone();
                }
            }
        }
        for (k, v) in cluster["patches"]
            .get(key)
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
        {
            if v.is_null() && !patch.keys().any(|p| p == k || inside(k, p)) {
                patch.insert(k.clone(), Value::Null);
            } else {
                set_key(&mut patch, k, v);
            }
        }
        if patched {
            patches.insert(key.to_owned(), Value::Object(patch));
        }
        refs.push(json!({"id": id, "enabled": enabled, "oci_tag": tag, "component_path": path}));
    }
    let merged = |field: &str| {
        let mut list: Vec<Value> = cluster[field].as_array().unwrap().clone();
        for overlay in &overlays {
            for id in overlay[field].as_array().unwrap() {
                let entry = json!({"id": id});
                if !list.contains(&entry) {
                    list.push(entry);
                }
            }
        }
        Value::from(list)
    };
    let mut served = cluster.clone();
    served["platform_components"] = Value::from(refs);
    served["patches"] = Value::Object(patches);
    served["namespaces"] = merged("namespaces");
    served["rolebindings"] = merged("rolebindings");
    served
}

/// The feed table (README, "API"), written out plainly.
fn expected_feeds(inv: &Inventory, cluster: &Value) -> [Value; 3] {
    let cluster = &layered(inv, cluster);
    let info = json!({"name": cluster["cluster_name"], "dns": cluster["cluster_dns"], "environment": cluster["environment"]});
    let components: Vec<Value> = cluster["platform_components"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let c = find(&inv.components, &r["id"]);
            let or = |over: &Value, base: &Value| if over.is_null() { base.clone() } else { over.clone() };
            json!({"id": r["id"], "component_path": or(&r["component_path"], &c["component_path"]),
                   "component_version": c["component_version"], "cluster_env_enabled": c["cluster_env_enabled"],
                   "depends_on": c["depends_on"], "enabled": r["enabled"],
                   "patches": cluster["patches"].get(r["id"].as_str().unwrap()).cloned().unwrap_or(json!({})),
                   "values": typed_values(cluster["patches"].get(r["id"].as_str().unwrap()).unwrap_or(&json!({}))),
                   "cluster": info, "source": {"oci_url": c["oci_url"], "oci_tag": or(&r["oci_tag"], &c["oci_tag"])}})
        })
        .collect();
    let namespaces: Vec<Value> = cluster["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let n = find(&inv.namespaces, &r["id"]);
            json!({"id": n["id"], "labels": n["labels"], "annotations": n["annotations"], "cluster": info})
        })
        .collect();
    let rolebindings: Vec<Value> = cluster["rolebindings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let b = find(&inv.rolebindings, &r["id"]);
            json!({"id": b["id"], "role": b["role"], "subjects": b["subjects"], "cluster": info})
        })
        .collect();
    [
        json!({"inputs": components}),
        json!({"inputs": namespaces}),
        json!({"inputs": rolebindings}),
    ]
}

fn check(inv: Inventory) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    let seed = dir.path().join("seed.json");
    let document = json!({"platform_components": inv.components, "namespaces": inv.namespaces,
                          "rolebindings": inv.rolebindings, "overlays": inv.overlays,
                          "clusters": inv.clusters});
    std::fs::write(&seed, document.to_string()).unwrap();
    let app = TestApp::with(ApiMode::ReadOnly, SeedSource::File(seed));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut ids: Vec<&str> = inv
            .clusters
            .iter()
            .map(|c| c["id"].as_str().unwrap())
            .collect();
        ids.sort();
        let list = app.get("/api/v2/flux/clusters").await;
        assert_flux_accepts(&list);
        let listed: Vec<&str> = list.json["inputs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["id"].as_str().unwrap())
            .collect();
        prop_assert_eq!(listed, ids);
        for cluster in &inv.clusters {
            let dns = cluster["cluster_dns"].as_str().unwrap();
            let expected = expected_feeds(&inv, cluster);
            for (feed, expected) in ["platform-components", "namespaces", "rolebindings"]
                .iter()
                .zip(expected)
            {
                let path = format!("/api/v2/flux/clusters/{dns}/{feed}");
                let first = app.get(&path).await;
                assert_flux_accepts(&first);
                prop_assert_eq!(&first.json, &expected, "{}", path);
                let again = app.get(&path).await;
                prop_assert_eq!(
                    first.bytes,
                    again.bytes,
                    "identical reads give identical bytes"
                );
            }
        }
        Ok(())
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: CASES, ..ProptestConfig::default() })]

    #[test]
    fn feeds_match_the_reference_model_and_pass_flux_checks(inv in inventory()) {
        check(inv)?;
    }
}
