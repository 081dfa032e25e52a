//! Seed files: `{"clusters", "platform_components", "namespaces", "rolebindings"}`.
//!
//! The format is flux-resourceset's `data/seed.json`: records may carry their id as `_id`,
//! and a cluster's `namespaces`/`rolebindings` entries may hold the whole definition inline
//! (labels, role, subjects). Inline definitions become catalog entries; two different
//! definitions of one id are an error. Loading runs every check the API runs, and an error
//! names the record at fault.

use std::collections::BTreeMap;

use poem_openapi::types::ParseFromJSON;
use rusqlite::Connection;
use serde_json::{Map, Value};

use super::{clusters, components, namespaces, rolebindings};
use crate::domain::model::{Cluster, Namespace, PlatformComponent, Rolebinding};
use crate::domain::validate;
use crate::error::{AppError, Result};

/// The demo inventory compiled into the binary (`seed/demo.json`).
pub const DEMO: &str = include_str!("../../seed/demo.json");

#[derive(Debug, Default, Clone, PartialEq)]
pub struct Seed {
    pub platform_components: Vec<PlatformComponent>,
    pub namespaces: Vec<Namespace>,
    pub rolebindings: Vec<Rolebinding>,
    pub clusters: Vec<Cluster>,
}

impl Seed {
    pub fn parse(text: &str) -> Result<Seed> {
        let root: Value = serde_json::from_str(text)
            .map_err(|err| AppError::BadRequest(format!("seed is not valid JSON: {err}")))?;
        let Value::Object(mut root) = root else {
            return Err(AppError::BadRequest("seed must be a JSON object".into()));
        };
        if let Some(key) = root.keys().find(|k| {
            ![
                "clusters",
                "platform_components",
                "namespaces",
                "rolebindings",
            ]
            .contains(&k.as_str())
        }) {
            return Err(AppError::BadRequest(format!(
                "seed: unknown top-level key '{key}'"
            )));
        }
        let mut seed = Seed {
            platform_components: parse_records(&mut root, "platform_components")?,
            namespaces: parse_records(&mut root, "namespaces")?,
            rolebindings: parse_records(&mut root, "rolebindings")?,
            clusters: Vec::new(),
        };
        let mut clusters = take_array(&mut root, "clusters")?;
        for (index, cluster) in clusters.iter_mut().enumerate() {
            let at = format!("clusters[{index}]");
            normalise_id(cluster, &at)?;
            hoist_inline(cluster, "namespaces", &at, &mut seed.namespaces)?;
            hoist_inline(cluster, "rolebindings", &at, &mut seed.rolebindings)?;
        }
        seed.clusters = clusters
            .into_iter()
            .enumerate()
            .map(|(index, value)| parse_one(value, &format!("clusters[{index}]")))
            .collect::<Result<_>>()?;
        Ok(seed)
    }

    /// Inserts the whole seed through the same checks as the API. The caller owns the
    /// transaction, so a failure leaves nothing behind.
    pub fn load(&self, conn: &Connection) -> Result<()> {
        // Rows first, edges second: `depends_on` may name a component listed later.
        for component in &self.platform_components {
            let at = record("platform_components", &component.id);
            validate::component(component).map_err(|e| at.wrap(e))?;
            components::insert_row(conn, component).map_err(|e| at.wrap(e))?;
        }
        for component in &self.platform_components {
            components::set_dependencies(conn, &component.id, &component.depends_on)
                .map_err(|e| record("platform_components", &component.id).wrap(e))?;
        }
        for namespace in &self.namespaces {
            let at = record("namespaces", &namespace.id);
            validate::namespace(namespace).map_err(|e| at.wrap(e))?;
            namespaces::insert(conn, namespace).map_err(|e| at.wrap(e))?;
        }
        for rolebinding in &self.rolebindings {
            let at = record("rolebindings", &rolebinding.id);
            validate::rolebinding(rolebinding).map_err(|e| at.wrap(e))?;
            rolebindings::insert(conn, rolebinding).map_err(|e| at.wrap(e))?;
        }
        for cluster in &self.clusters {
            let at = record("clusters", &cluster.id);
            validate::cluster(cluster).map_err(|e| at.wrap(e))?;
            clusters::insert(conn, cluster).map_err(|e| at.wrap(e))?;
        }
        super::feed_cache::bump_revision(conn)
    }

    /// The whole inventory in seed format (ids as `id`), every list ordered by id. Importing
    /// it into an empty database reproduces the same feeds byte for byte.
    pub fn export(conn: &Connection) -> Result<Value> {
        use poem_openapi::types::ToJSON;
        let all = Default::default();
        Ok(serde_json::json!({
            "platform_components": components::list(conn, None, all)?.to_json(),
            "namespaces": namespaces::list(conn, all)?.to_json(),
            "rolebindings": rolebindings::list(conn, all)?.to_json(),
            "clusters": clusters::list(conn, &Default::default())?.to_json(),
        }))
    }

    /// Imports into a database that may hold data: every record of the file is created or,
    /// when its id exists, replaced; records not in the file are kept. Runs the API's checks,
    /// including Flux's limits on every affected cluster. Returns the affected cluster ids
    /// (for a preview) and the warnings. The caller owns the transaction.
    pub fn upsert(
        &self,
        conn: &Connection,
        strict_dependencies: bool,
    ) -> Result<(Vec<String>, Vec<String>)> {
        let affected = self.affected_clusters(conn)?;
        let mut component_befores = Vec::new();
        for component in &self.platform_components {
            component_befores.push(state::<PlatformComponent>(conn, &component.id)?);
            let at = record("platform_components", &component.id);
            validate::component(component).map_err(|e| at.wrap(e))?;
            let result = if components::get(conn, &component.id)?.is_some() {
                components::update_row(conn, component)
            } else {
                components::insert_row(conn, component)
            };
            result.map_err(|e| at.wrap(e))?;
        }
        for (component, before) in self.platform_components.iter().zip(component_befores) {
            components::set_dependencies(conn, &component.id, &component.depends_on)
                .map_err(|e| record("platform_components", &component.id).wrap(e))?;
            audit_import::<PlatformComponent>(conn, &component.id, before)?;
        }
        for namespace in &self.namespaces {
            let at = record("namespaces", &namespace.id);
            validate::namespace(namespace).map_err(|e| at.wrap(e))?;
            let before = state::<Namespace>(conn, &namespace.id)?;
            let result = if namespaces::get(conn, &namespace.id)?.is_some() {
                namespaces::update(conn, namespace)
            } else {
                namespaces::insert(conn, namespace)
            };
            result.map_err(|e| at.wrap(e))?;
            audit_import::<Namespace>(conn, &namespace.id, before)?;
        }
        for rolebinding in &self.rolebindings {
            let at = record("rolebindings", &rolebinding.id);
            validate::rolebinding(rolebinding).map_err(|e| at.wrap(e))?;
            let before = state::<Rolebinding>(conn, &rolebinding.id)?;
            let result = if rolebindings::get(conn, &rolebinding.id)?.is_some() {
                rolebindings::update(conn, rolebinding)
            } else {
                rolebindings::insert(conn, rolebinding)
            };
            result.map_err(|e| at.wrap(e))?;
            audit_import::<Rolebinding>(conn, &rolebinding.id, before)?;
        }
        for cluster in &self.clusters {
            let at = record("clusters", &cluster.id);
            validate::cluster(cluster).map_err(|e| at.wrap(e))?;
            let before = state::<Cluster>(conn, &cluster.id)?;
            let result = if before.is_some() {
                clusters::replace(conn, cluster)
            } else {
                clusters::insert(conn, cluster)
            };
            result.map_err(|e| at.wrap(e))?;
            audit_import::<Cluster>(conn, &cluster.id, before)?;
        }
        super::feed_cache::bump_revision(conn)?;
        let after = super::checks::snapshot(conn, &affected)?;
        let warnings = super::checks::check(conn, &after, strict_dependencies)?;
        Ok((affected, warnings))
    }

    /// Clusters in the file, and clusters using a definition the file replaces.
    pub fn affected_clusters(&self, conn: &Connection) -> Result<Vec<String>> {
        use super::resource::Resource;
        let mut ids: Vec<String> = self.clusters.iter().map(|c| c.id.clone()).collect();
        for c in &self.platform_components {
            ids.extend(PlatformComponent::affected_clusters(conn, &c.id)?);
        }
        for n in &self.namespaces {
            ids.extend(Namespace::affected_clusters(conn, &n.id)?);
        }
        for r in &self.rolebindings {
            ids.extend(Rolebinding::affected_clusters(conn, &r.id)?);
        }
        ids.sort();
        ids.dedup();
        Ok(ids)
    }
}

/// A resource's current state as JSON, for the audit trail.
fn state<R: super::Resource>(conn: &Connection, id: &str) -> Result<Option<Value>> {
    Ok(R::get(conn, id)?.and_then(|r| r.to_json()))
}

/// Records one imported record in the audit trail (actor `import`).
fn audit_import<R: super::Resource>(
    conn: &Connection,
    id: &str,
    before: Option<Value>,
) -> Result<()> {
    let change = super::audit::Change {
        actor: "import".into(),
        method: "IMPORT",
    };
    let after = state::<R>(conn, id)?;
    super::audit::append(
        conn,
        &change,
        R::COLLECTION,
        id,
        before.as_ref(),
        after.as_ref(),
    )?;
    Ok(())
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

fn take_array(root: &mut Map<String, Value>, key: &str) -> Result<Vec<Value>> {
    match root.remove(key) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => Ok(items),
        Some(_) => Err(AppError::BadRequest(format!(
            "seed: '{key}' must be an array"
        ))),
    }
}

fn parse_records<T: ParseFromJSON>(root: &mut Map<String, Value>, key: &str) -> Result<Vec<T>> {
    take_array(root, key)?
        .into_iter()
        .enumerate()
        .map(|(index, mut value)| {
            let at = format!("{key}[{index}]");
            normalise_id(&mut value, &at)?;
            parse_one(value, &at)
        })
        .collect()
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

/// Moves inline definitions in a cluster's `field` list into `definitions`, leaving `{id}`.
fn hoist_inline<T: ParseFromJSON + PartialEq + HasId>(
    cluster: &mut Value,
    field: &str,
    at: &str,
    definitions: &mut Vec<T>,
) -> Result<()> {
    let Some(Value::Array(entries)) = cluster.get_mut(field) else {
        return Ok(());
    };
    for (index, entry) in entries.iter_mut().enumerate() {
        let Value::Object(map) = entry else { continue };
        if map.len() <= 1 {
            continue;
        }
        let at = format!("{at}.{field}[{index}]");
        let definition: T = parse_one(Value::Object(map.clone()), &at)?;
        match definitions.iter().find(|d| d.id() == definition.id()) {
            Some(existing) if existing != &definition => {
                return Err(AppError::Validation(format!(
                    "seed {at}: conflicting definitions of '{}'",
                    definition.id()
                )));
            }
            Some(_) => {}
            None => definitions.push(definition),
        }
        let id = map.get("id").cloned().unwrap_or(Value::Null);
        *entry = Value::Object(Map::from_iter([("id".to_string(), id)]));
    }
    Ok(())
}

trait HasId {
    fn id(&self) -> &str;
}

impl HasId for Namespace {
    fn id(&self) -> &str {
        &self.id
    }
}

impl HasId for Rolebinding {
    fn id(&self) -> &str {
        &self.id
    }
}

/// Counts for the start-up log line.
pub fn summary(seed: &Seed) -> BTreeMap<&'static str, usize> {
    BTreeMap::from([
        ("clusters", seed.clusters.len()),
        ("platform_components", seed.platform_components.len()),
        ("namespaces", seed.namespaces.len()),
        ("rolebindings", seed.rolebindings.len()),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn peer_seed_with_underscore_ids_and_inline_definitions_parses() {
        let seed = Seed::parse(PEER_STYLE).unwrap();
        assert_eq!(seed.clusters[0].id, "demo-cluster-01");
        assert_eq!(seed.platform_components[0].id, "cert-manager");
        assert_eq!(seed.namespaces[0].labels["app"], "cert-manager");
        assert_eq!(seed.rolebindings[0].role, "cluster-admin");
        assert_eq!(seed.clusters[0].namespaces[0].id, "cert-manager");
    }

    #[test]
    fn errors_name_the_record() {
        let text = r#"{"platform_components": [{"_id": "a", "component_path": "a"}]}"#;
        let err = Seed::parse(text).unwrap_err().to_string();
        assert!(err.contains("platform_components[0] 'a'"), "{err}");
    }

    #[test]
    fn conflicting_inline_definitions_are_refused() {
        let text = r#"{"clusters": [
          {"_id": "a", "cluster_name": "a", "cluster_dns": "a.x", "environment": "dev", "platform_components": [],
           "namespaces": [{"id": "n", "labels": {"k": "1"}}]},
          {"_id": "b", "cluster_name": "b", "cluster_dns": "b.x", "environment": "dev", "platform_components": [],
           "namespaces": [{"id": "n", "labels": {"k": "2"}}]}]}"#;
        let err = Seed::parse(text).unwrap_err().to_string();
        assert!(err.contains("conflicting definitions of 'n'"), "{err}");
    }

    #[test]
    fn demo_seed_parses() {
        let seed = Seed::parse(DEMO).unwrap();
        assert!(seed.clusters.len() >= 3);
        assert!(seed.platform_components.len() >= 5);
    }
}
