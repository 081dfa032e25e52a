//! Seed files: `{"clusters", "platform_components", "namespaces", "rolebindings"}` and
//! optionally `"overlays"` and `"windows"`, loaded as a stream through the write pipeline.
//!
//! The format is flux-resourceset's `data/seed.json`: records may carry their id as `_id`,
//! and a cluster's `namespaces`/`rolebindings` entries may hold the whole definition inline
//! (labels, role, subjects). Inline definitions become catalog entries; two different
//! definitions of one id are an error. Every record runs the API's checks, and an error names
//! the record at fault.
//!
//! The file is read twice, one record in memory at a time: first the catalog (components,
//! definitions, inline definitions found in clusters; the overlays, which reference them,
//! once the pass is over), then the clusters, which may come
//! before the catalog in the file but reference it. So a 100,000-cluster file loads in the
//! memory of one cluster plus the catalog.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::path::Path;

use poem_openapi::types::ParseFromJSON;
use rusqlite::Connection;
use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

use super::write::Pipeline;
use super::{clusters, components, namespaces, overlays, rolebindings, windows};
use crate::domain::model::{Cluster, Namespace, PlatformComponent, Rolebinding};
use crate::domain::overlay::Overlay;
use crate::domain::validate;
use crate::domain::window::Window;
use crate::error::{AppError, Result};

/// The demo inventory compiled into the binary (`seed/demo.json`).
pub const DEMO: &str = include_str!("../../seed/demo.json");

/// Where a seed is read from; read twice.
#[derive(Clone, Copy, Debug)]
pub enum SeedInput<'a> {
    Text(&'a str),
    File(&'a Path),
}

/// Records per kind, for the log line and the import summary.
pub type Counts = BTreeMap<&'static str, usize>;

/// How records meet existing ones.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// A new database: every id must be new.
    Create,
    /// Import: create, or replace the record with the same id; others are kept.
    Upsert,
}

const KEYS: [&str; 6] = [
    "clusters",
    "platform_components",
    "namespaces",
    "rolebindings",
    "overlays",
    "windows",
];

/// Streams `input` into the pipeline's transaction; see the module documentation.
pub fn apply(input: SeedInput<'_>, pipeline: &mut Pipeline<'_>, mode: Mode) -> Result<Counts> {
    let mut loader = Loader {
        pipeline,
        mode,
        pass: Pass::Catalog,
        counts: Counts::new(),
        definitions: Definitions::default(),
        dependencies: Vec::new(),
        overlays: Vec::new(),
        failure: None,
    };
    loader.run(input)?;
    // Rows first, edges second: `depends_on` may name a component listed later.
    for (id, depends_on, before) in std::mem::take(&mut loader.dependencies) {
        let at = record("platform_components", &id);
        components::set_dependencies(loader.pipeline.conn(), &id, &depends_on)
            .map_err(|e| at.wrap(e))?;
        loader.pipeline.recorded::<PlatformComponent>(&id, before)?;
    }
    // Overlays reference the catalog, which may come after them in the file.
    for overlay in std::mem::take(&mut loader.overlays) {
        loader.overlay(overlay)?;
    }
    loader.pass = Pass::Clusters;
    loader.run(input)?;
    Ok(loader.counts)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Pass {
    Catalog,
    Clusters,
}

/// Definitions seen in this file: two different namespace or rolebinding definitions of one
/// id are refused, and so is a component or cluster listed twice (the later one would
/// otherwise replace the earlier without a word).
#[derive(Default)]
struct Definitions {
    namespaces: HashMap<String, Namespace>,
    rolebindings: HashMap<String, Rolebinding>,
    components: HashSet<String>,
    clusters: HashSet<String>,
    overlays: HashSet<String>,
    windows: HashSet<String>,
}

fn listed_once(seen: &mut HashSet<String>, kind: &str, id: &str) -> Result<()> {
    if seen.insert(id.to_owned()) {
        return Ok(());
    }
    Err(AppError::Validation(format!(
        "seed {kind} '{id}': listed more than once in the file; keep one"
    )))
}

struct Loader<'p, 'c> {
    pipeline: &'p mut Pipeline<'c>,
    mode: Mode,
    pass: Pass,
    counts: Counts,
    definitions: Definitions,
    /// Components whose edges are set after every row exists: (id, depends_on, state before).
    dependencies: Vec<(String, Vec<String>, Option<Value>)>,
    /// Overlays, written once the catalog pass is over (few, and small).
    overlays: Vec<Overlay>,
    /// The error that stopped the stream (serde carries only text).
    failure: Option<AppError>,
}

impl Loader<'_, '_> {
    fn run(&mut self, input: SeedInput<'_>) -> Result<()> {
        match input {
            SeedInput::Text(text) => self.read(serde_json::Deserializer::from_str(text)),
            SeedInput::File(path) => {
                let file = std::fs::File::open(path).map_err(|err| {
                    AppError::BadRequest(format!("cannot read seed file {}: {err}", path.display()))
                })?;
                // A concrete `BufReader` (not a `dyn Read`): the JSON reader takes bytes from
                // its buffer directly, not with a call per byte (6-10 % of a large import).
                let reader = std::io::BufReader::with_capacity(256 * 1024, file);
                self.read(serde_json::Deserializer::from_reader(reader))
            }
        }
    }

    fn read<'de, R: serde_json::de::Read<'de>>(
        &mut self,
        mut deserializer: serde_json::Deserializer<R>,
    ) -> Result<()> {
        let outcome = de::Deserializer::deserialize_map(&mut deserializer, Root(self))
            .and_then(|()| deserializer.end());
        match (self.failure.take(), outcome) {
            (Some(failure), _) => Err(failure),
            (None, Ok(())) => Ok(()),
            (None, Err(err)) => Err(AppError::BadRequest(format!(
                "seed is not valid JSON: {err}"
            ))),
        }
    }

    /// One record of `kind`; errors are kept for `run` to return.
    fn record(&mut self, kind: &str, index: usize, value: Value) -> Result<()> {
        let at = format!("{kind}[{index}]");
        let mut value = value;
        normalise_id(&mut value, &at)?;
        match (self.pass, kind) {
            (Pass::Catalog, "platform_components") => {
                let component: PlatformComponent = parse_one(value, &at)?;
                self.component(component)
            }
            (Pass::Catalog, "namespaces") => {
                let namespace: Namespace = parse_one(value, &at)?;
                self.namespace(namespace, &at)
            }
            (Pass::Catalog, "rolebindings") => {
                let rolebinding: Rolebinding = parse_one(value, &at)?;
                self.rolebinding(rolebinding, &at)
            }
            (Pass::Catalog, "overlays") => {
                let overlay: Overlay = parse_one(value, &at)?;
                listed_once(&mut self.definitions.overlays, "overlays", &overlay.id)?;
                let record_at = record("overlays", &overlay.id);
                validate::overlay(&overlay).map_err(|e| record_at.wrap(e))?;
                self.overlays.push(overlay);
                Ok(())
            }
            (Pass::Catalog, "windows") => {
                let window: Window = parse_one(value, &at)?;
                listed_once(&mut self.definitions.windows, "windows", &window.id)?;
                self.window(window)
            }
            _ => Ok(()),
        }
    }

    /// Catalog pass: a cluster's inline namespace and rolebinding definitions.
    fn inlines(&mut self, index: usize, inlines: ClusterInlines) -> Result<()> {
        for (field, entries) in [
            ("namespaces", inlines.namespaces),
            ("rolebindings", inlines.rolebindings),
        ] {
            for (position, mut entry) in entries.into_iter().enumerate() {
                if entry.as_object().is_none_or(|map| map.len() <= 1) {
                    continue;
                }
                let at = format!("clusters[{index}].{field}[{position}]");
                normalise_id(&mut entry, &at)?;
                if field == "namespaces" {
                    self.namespace(parse_one(entry, &at)?, &at)?;
                } else {
                    self.rolebinding(parse_one(entry, &at)?, &at)?;
                }
            }
        }
        Ok(())
    }

    /// Clusters pass: one cluster.
    fn seed_cluster(&mut self, index: usize, seed: SeedCluster) -> Result<()> {
        let cluster = seed.into_cluster(index)?;
        self.cluster(cluster)
    }

    fn component(&mut self, component: PlatformComponent) -> Result<()> {
        listed_once(
            &mut self.definitions.components,
            "platform_components",
            &component.id,
        )?;
        let at = record("platform_components", &component.id);
        validate::component(&component).map_err(|e| at.wrap(e))?;
        let conn = self.pipeline.conn();
        let before = state::<PlatformComponent>(conn, &component.id)?;
        let written = match (self.mode, before.is_some()) {
            (Mode::Upsert, true) => components::update_row(conn, &component),
            _ => components::insert_row(conn, &component),
        };
        written.map_err(|e| at.wrap(e))?;
        self.dependencies
            .push((component.id, component.depends_on, before));
        *self.counts.entry("platform_components").or_default() += 1;
        Ok(())
    }

    fn namespace(&mut self, namespace: Namespace, at: &str) -> Result<()> {
        if let Some(seen) = self.definitions.namespaces.get(&namespace.id) {
            return same_definition(seen == &namespace, at, &namespace.id);
        }
        let record_at = record("namespaces", &namespace.id);
        validate::namespace(&namespace).map_err(|e| record_at.wrap(e))?;
        let mode = self.mode;
        self.pipeline
            .record::<Namespace, _>(&namespace.id, |conn| {
                match (mode, namespaces::get(conn, &namespace.id)?.is_some()) {
                    (Mode::Upsert, true) => namespaces::update(conn, &namespace),
                    _ => namespaces::insert(conn, &namespace),
                }
            })
            .map_err(|e| record_at.wrap(e))?;
        *self.counts.entry("namespaces").or_default() += 1;
        self.definitions
            .namespaces
            .insert(namespace.id.clone(), namespace);
        Ok(())
    }

    fn rolebinding(&mut self, rolebinding: Rolebinding, at: &str) -> Result<()> {
        if let Some(seen) = self.definitions.rolebindings.get(&rolebinding.id) {
            return same_definition(seen == &rolebinding, at, &rolebinding.id);
        }
        let record_at = record("rolebindings", &rolebinding.id);
        validate::rolebinding(&rolebinding).map_err(|e| record_at.wrap(e))?;
        let mode = self.mode;
        self.pipeline
            .record::<Rolebinding, _>(&rolebinding.id, |conn| {
                match (mode, rolebindings::get(conn, &rolebinding.id)?.is_some()) {
                    (Mode::Upsert, true) => rolebindings::update(conn, &rolebinding),
                    _ => rolebindings::insert(conn, &rolebinding),
                }
            })
            .map_err(|e| record_at.wrap(e))?;
        *self.counts.entry("rolebindings").or_default() += 1;
        self.definitions
            .rolebindings
            .insert(rolebinding.id.clone(), rolebinding);
        Ok(())
    }

    fn overlay(&mut self, overlay: Overlay) -> Result<()> {
        let at = record("overlays", &overlay.id);
        let mode = self.mode;
        self.pipeline
            .record::<Overlay, _>(&overlay.id, |conn| {
                match (mode, overlays::get(conn, &overlay.id)?.is_some()) {
                    (Mode::Upsert, true) => overlays::update(conn, &overlay),
                    _ => overlays::insert(conn, &overlay),
                }
            })
            .map_err(|e| at.wrap(e))?;
        *self.counts.entry("overlays").or_default() += 1;
        Ok(())
    }

    fn window(&mut self, window: Window) -> Result<()> {
        let at = record("windows", &window.id);
        validate::window(&window).map_err(|e| at.wrap(e))?;
        let mode = self.mode;
        self.pipeline
            .record::<Window, _>(&window.id, |conn| {
                match (mode, windows::get(conn, &window.id)?.is_some()) {
                    (Mode::Upsert, true) => windows::update(conn, &window),
                    _ => windows::insert(conn, &window),
                }
            })
            .map_err(|e| at.wrap(e))?;
        *self.counts.entry("windows").or_default() += 1;
        Ok(())
    }

    fn cluster(&mut self, cluster: Cluster) -> Result<()> {
        listed_once(&mut self.definitions.clusters, "clusters", &cluster.id)?;
        let at = record("clusters", &cluster.id);
        validate::cluster(&cluster).map_err(|e| at.wrap(e))?;
        let conn = self.pipeline.conn();
        let existing = self.mode == Mode::Upsert && clusters::exists(conn, &cluster.id)?;
        let written = if existing {
            let before = state::<Cluster>(conn, &cluster.id)?;
            clusters::replace(conn, &cluster).map(|()| before)
        } else {
            clusters::insert(conn, &cluster).map(|()| None)
        };
        let before = written.map_err(|e| at.wrap(e))?;
        // A cluster is stored exactly as given: its audit state needs no read back.
        self.pipeline.recorded_as(&cluster.id, before, &cluster)?;
        *self.counts.entry("clusters").or_default() += 1;
        Ok(())
    }
}

fn same_definition(same: bool, at: &str, id: &str) -> Result<()> {
    if same {
        Ok(())
    } else {
        Err(AppError::Validation(format!(
            "seed {at}: conflicting definitions of '{id}'"
        )))
    }
}

/// What the catalog pass reads of a cluster: its namespace and rolebinding entries (whole
/// definitions in flux-resourceset's format, `{id}` otherwise); other fields are skipped.
#[derive(serde::Deserialize)]
struct ClusterInlines {
    #[serde(default)]
    namespaces: Vec<Value>,
    #[serde(default)]
    rolebindings: Vec<Value>,
}

/// A reference in a seed cluster: `{id}` (or `_id`), or a whole inline definition whose
/// other fields the catalog pass already took.
#[derive(serde::Deserialize)]
struct SeedRef {
    #[serde(alias = "_id")]
    id: String,
}

/// A cluster as a seed file holds it; checked like an API body once converted.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct SeedCluster {
    #[serde(alias = "_id")]
    id: String,
    cluster_name: String,
    cluster_dns: String,
    environment: String,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    platform_components: Vec<SeedComponentRef>,
    #[serde(default)]
    namespaces: Vec<SeedRef>,
    #[serde(default)]
    rolebindings: Vec<SeedRef>,
    #[serde(default)]
    patches: BTreeMap<String, crate::domain::model::Patch>,
    #[serde(default)]
    node_count: Option<i64>,
    #[serde(default)]
    vm_image: Option<String>,
    #[serde(default)]
    k0s_version: Option<String>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct SeedComponentRef {
    id: String,
    enabled: bool,
    #[serde(default)]
    oci_tag: Option<String>,
    #[serde(default)]
    component_path: Option<String>,
}

impl SeedCluster {
    fn into_cluster(self, index: usize) -> Result<Cluster> {
        use crate::domain::model::{ComponentRef, Environment, IdRef};
        let environment = Environment::parse(&self.environment).ok_or_else(|| {
            AppError::BadRequest(format!(
                "seed clusters[{index}] '{}': environment '{}' is not one of dev, qa, uat, prod",
                self.id, self.environment
            ))
        })?;
        let ids = |refs: Vec<SeedRef>| refs.into_iter().map(|r| IdRef { id: r.id }).collect();
        Ok(Cluster {
            id: self.id,
            cluster_name: self.cluster_name,
            cluster_dns: self.cluster_dns,
            environment,
            labels: self.labels,
            platform_components: self
                .platform_components
                .into_iter()
                .map(|r| ComponentRef {
                    id: r.id,
                    enabled: r.enabled,
                    oci_tag: r.oci_tag,
                    component_path: r.component_path,
                })
                .collect(),
            namespaces: ids(self.namespaces),
            rolebindings: ids(self.rolebindings),
            patches: self.patches,
            node_count: self.node_count,
            vm_image: self.vm_image,
            k0s_version: self.k0s_version,
        })
    }
}

/// The top-level object: each known key's array is streamed, the rest refused.
struct Root<'l, 'p, 'c>(&'l mut Loader<'p, 'c>);

impl<'de> Visitor<'de> for Root<'_, '_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(
            "a JSON object with clusters, platform_components, namespaces, rolebindings, overlays, windows",
        )
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<(), A::Error> {
        while let Some(key) = map.next_key::<String>()? {
            let Some(kind) = KEYS.iter().find(|k| **k == key) else {
                self.0.failure = Some(AppError::BadRequest(format!(
                    "seed: unknown top-level key '{key}'"
                )));
                return Err(de::Error::custom("unknown key"));
            };
            let wanted = match self.0.pass {
                Pass::Catalog => true,
                Pass::Clusters => *kind == "clusters",
            };
            if wanted {
                map.next_value_seed(Records {
                    loader: self.0,
                    kind,
                })?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(())
    }
}

/// One top-level array, record by record (`null` is an empty list).
struct Records<'l, 'p, 'c> {
    loader: &'l mut Loader<'p, 'c>,
    kind: &'static str,
}

impl<'de> DeserializeSeed<'de> for Records<'_, '_, '_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> std::result::Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Records<'_, '_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "an array of {}", self.kind)
    }

    fn visit_unit<E: de::Error>(self) -> std::result::Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<(), A::Error> {
        let loader = self.loader;
        let kind = self.kind;
        let mut index = 0;
        loop {
            // Clusters are the bulk of a file: read straight into their own shapes (the
            // catalog pass needs only their inline definitions), not through a JSON tree.
            let outcome = match (kind, loader.pass) {
                ("clusters", Pass::Catalog) => seq
                    .next_element::<ClusterInlines>()
                    .map(|found| found.map(|inlines| loader.inlines(index, inlines))),
                ("clusters", Pass::Clusters) => seq
                    .next_element::<SeedCluster>()
                    .map(|found| found.map(|cluster| loader.seed_cluster(index, cluster))),
                _ => seq
                    .next_element::<Value>()
                    .map(|found| found.map(|value| loader.record(kind, index, value))),
            };
            match outcome {
                Ok(None) => return Ok(()),
                Ok(Some(Ok(()))) => index += 1,
                Ok(Some(Err(err))) => {
                    loader.failure = Some(err);
                    return Err(de::Error::custom("record refused"));
                }
                Err(err) => {
                    loader.failure = Some(AppError::BadRequest(format!(
                        "seed {kind}[{index}] is not valid: {err}"
                    )));
                    return Err(err);
                }
            }
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, _map: A) -> std::result::Result<(), A::Error> {
        self.loader.failure = Some(AppError::BadRequest(format!(
            "seed: '{}' must be an array",
            self.kind
        )));
        Err(de::Error::custom("not an array"))
    }

    fn visit_str<E: de::Error>(self, _value: &str) -> std::result::Result<(), E> {
        self.loader.failure = Some(AppError::BadRequest(format!(
            "seed: '{}' must be an array",
            self.kind
        )));
        Err(de::Error::custom("not an array"))
    }
}

/// The whole inventory in seed format (ids as `id`), every list ordered by id. Importing
/// it into an empty database reproduces the same feeds byte for byte.
pub fn export(conn: &Connection) -> Result<Value> {
    use poem_openapi::types::ToJSON;
    let all = Default::default();
    let mut document = serde_json::json!({
        "platform_components": components::list(conn, None, all)?.to_json(),
        "namespaces": namespaces::list(conn, all)?.to_json(),
        "rolebindings": rolebindings::list(conn, all)?.to_json(),
        "clusters": clusters::list(conn, &Default::default())?.to_json(),
    });
    // Only when there are any: the file stays readable by flux-resourceset otherwise.
    let overlays = overlays::list(conn, all)?;
    if !overlays.is_empty() {
        document["overlays"] = overlays.to_json().unwrap_or_default();
    }
    let windows = windows::list(conn, all)?;
    if !windows.is_empty() {
        document["windows"] = windows.to_json().unwrap_or_default();
    }
    Ok(document)
}

/// A resource's current state as JSON, for the audit trail.
fn state<R: super::Resource>(conn: &Connection, id: &str) -> Result<Option<Value>> {
    Ok(R::get(conn, id)?.and_then(|r| r.to_json()))
}

struct Record(String);

fn record(kind: &str, id: &str) -> Record {
    Record(format!("seed {kind} '{id}'"))
}

impl Record {
    fn wrap(&self, err: AppError) -> AppError {
        match err {
            AppError::Internal(_) | AppError::Unavailable(_) => err,
            other => AppError::Validation(format!("{}: {other}", self.0)),
        }
    }
}

fn parse_one<T: ParseFromJSON>(value: Value, at: &str) -> Result<T> {
    let id = value
        .get("id")
        .and_then(Value::as_str)
        .map(|id| format!(" '{id}'"))
        .unwrap_or_default();
    T::parse_from_json(Some(value))
        .map_err(|err| AppError::BadRequest(format!("seed {at}{id}: {}", err.into_message())))
}

/// flux-resourceset stores ids as `_id`; accept either spelling, not two different ones.
fn normalise_id(value: &mut Value, at: &str) -> Result<()> {
    let Value::Object(map) = value else {
        return Err(AppError::BadRequest(format!(
            "seed {at}: must be an object"
        )));
    };
    if let Some(legacy) = map.remove("_id") {
        match map.get("id") {
            Some(id) if id != &legacy => {
                return Err(AppError::BadRequest(format!(
                    "seed {at}: '_id' {legacy} differs from 'id' {id}"
                )));
            }
            Some(_) => {}
            None => {
                map.insert("id".into(), legacy);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::write::Finish;

    const PEER_STYLE: &str = r#"{
      "clusters": [{
        "_id": "demo-cluster-01", "cluster_name": "demo-cluster-01",
        "cluster_dns": "demo-cluster-01.k8s.example.com", "environment": "dev",
        "platform_components": [{"id": "cert-manager", "enabled": true, "oci_tag": null, "component_path": null}],
        "namespaces": [{"id": "cert-manager", "labels": {"app": "cert-manager"}, "annotations": {}}],
        "rolebindings": [{"id": "platform-admins", "role": "cluster-admin",
          "subjects": [{"kind": "Group", "name": "platform-team", "apiGroup": "rbac.authorization.k8s.io"}]}],
        "patches": {"cert-manager": {"crds.enabled": "true"}}
      }],
      "platform_components": [{"_id": "cert-manager", "component_path": "cert-manager",
        "component_version": "latest", "cluster_env_enabled": false,
        "oci_url": "https://charts.jetstack.io", "oci_tag": "latest", "depends_on": []}]
    }"#;

    fn load(text: &str) -> Result<(Connection, Counts)> {
        let mut conn = Connection::open_in_memory().unwrap();
        crate::store::migrate::migrate(&mut conn, |_| Ok(())).unwrap();
        let tx = conn.transaction().unwrap();
        let mut pipeline = Pipeline::new(&tx, None, 0);
        let counts = apply(SeedInput::Text(text), &mut pipeline, Mode::Create)?;
        pipeline.finish(Finish::default())?;
        tx.commit().unwrap();
        Ok((conn, counts))
    }

    #[test]
    fn peer_seed_with_underscore_ids_and_inline_definitions_loads_clusters_first_or_not() {
        let (conn, counts) = load(PEER_STYLE).unwrap();
        assert_eq!(counts["clusters"], 1);
        let cluster = clusters::get(&conn, "demo-cluster-01").unwrap().unwrap();
        assert_eq!(cluster.namespaces[0].id, "cert-manager");
        let namespace = namespaces::get(&conn, "cert-manager").unwrap().unwrap();
        assert_eq!(namespace.labels["app"], "cert-manager");
        let rolebinding = rolebindings::get(&conn, "platform-admins")
            .unwrap()
            .unwrap();
        assert_eq!(rolebinding.role, "cluster-admin");
    }

    #[test]
    fn errors_name_the_record() {
        let text = r#"{"platform_components": [{"_id": "a", "component_path": "a"}]}"#;
        let err = load(text).unwrap_err().to_string();
        assert!(err.contains("platform_components[0] 'a'"), "{err}");
        let err = load(r#"{"clusters": [], "extra": 1}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown top-level key 'extra'"), "{err}");
        let err = load(r#"{"clusters": {}}"#).unwrap_err().to_string();
        assert!(err.contains("must be an array"), "{err}");
        let err = load(r#"{"clusters": [}"#).unwrap_err().to_string();
        assert!(
            err.contains("clusters[0] is not valid") && err.contains("line 1"),
            "{err}"
        );
        let err = load(r#"{"clusters": [{"id": "a", "cluster_name": "a", "clusterdns": "a.x"}]}"#)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("clusters[0]") && err.contains("clusterdns"),
            "{err}"
        );
        let err = load(r#"{"platform_components": [] "#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("not valid JSON"), "{err}");
    }

    #[test]
    fn conflicting_inline_definitions_are_refused() {
        let text = r#"{"clusters": [
          {"_id": "a", "cluster_name": "a", "cluster_dns": "a.x", "environment": "dev", "platform_components": [],
           "namespaces": [{"id": "n", "labels": {"k": "1"}}]},
          {"_id": "b", "cluster_name": "b", "cluster_dns": "b.x", "environment": "dev", "platform_components": [],
           "namespaces": [{"id": "n", "labels": {"k": "2"}}]}]}"#;
        let err = load(text).unwrap_err().to_string();
        assert!(err.contains("conflicting definitions of 'n'"), "{err}");
    }

    #[test]
    fn demo_seed_loads() {
        let (_, counts) = load(DEMO).unwrap();
        assert!(counts["clusters"] >= 3);
        assert!(counts["platform_components"] >= 5);
    }
}
