//! Overlays (README, "Overlays"): component values and assignments set once for every cluster
//! a selector matches, layered between the catalog and the cluster's own entry. No I/O here.
//!
//! A cluster's effective platform components, lowest layer first: the catalog entry → every
//! matching overlay, in ascending `priority` then id → the cluster's own entry. For `enabled`,
//! `oci_tag` and `component_path` the highest layer that sets a field wins (a cluster entry's
//! `null` sets nothing; a cluster's own entry always sets `enabled`). Patches merge key by
//! key, the higher layer winning (a key replaces the lower keys it overlaps: `a` replaces
//! `a.b`); an overlay's `null` removes the key a lower layer set, and the keys inside it.
//!
//! Assignment is explicit: an overlay entry that sets `enabled` assigns its component to the
//! cluster even when the cluster does not list it; one without `enabled` only sets values on
//! clusters the component is assigned to. The cluster's own components come first, then those
//! the overlays assign, in overlay order; namespaces and rolebindings the overlays name are
//! added after the cluster's own, without duplicates.

use std::collections::BTreeMap;

use poem_openapi::Object;
use serde_json::Value;

use super::model::{Cluster, ComponentRef, Environment, IdRef, Patch};
use super::values;

/// Which clusters an overlay applies to: every condition given must hold; `{}` matches all.
#[derive(Object, Clone, Debug, Default, PartialEq)]
#[oai(deny_unknown_fields)]
pub struct Selector {
    /// Only clusters of this environment.
    #[oai(skip_serializing_if_is_none)]
    pub environment: Option<Environment>,
    /// Only clusters carrying every one of these labels.
    #[oai(default)]
    pub labels: BTreeMap<String, String>,
}

impl Selector {
    pub fn matches(&self, environment: Environment, labels: &BTreeMap<String, String>) -> bool {
        self.environment.is_none_or(|wanted| wanted == environment)
            && self
                .labels
                .iter()
                .all(|(key, value)| labels.get(key) == Some(value))
    }
}

/// What an overlay sets for one component; every field but `id` optional.
#[derive(Object, Clone, Debug, PartialEq)]
#[oai(deny_unknown_fields)]
pub struct OverlayComponent {
    /// Catalog component id.
    pub id: String,
    /// Set: assigns the component to every matching cluster, enabled or disabled. Absent:
    /// the entry only sets values where the component is assigned already.
    #[oai(skip_serializing_if_is_none)]
    pub enabled: Option<bool>,
    /// Overrides the catalog's `oci_tag` (a cluster's own override still wins).
    #[oai(skip_serializing_if_is_none)]
    pub oci_tag: Option<String>,
    /// Overrides the catalog's `component_path` (a cluster's own override still wins).
    #[oai(skip_serializing_if_is_none)]
    pub component_path: Option<String>,
}

/// Values and assignments for every cluster the selector matches.
#[derive(Object, Clone, Debug, PartialEq)]
#[oai(deny_unknown_fields)]
pub struct Overlay {
    /// Overlay id (lowercase RFC 1123 label).
    #[oai(validator(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length = 63))]
    pub id: String,
    #[oai(default)]
    pub description: String,
    #[oai(default)]
    pub selector: Selector,
    /// Overlays apply in ascending priority, ties by id: the last one wins a field.
    #[oai(default)]
    pub priority: i64,
    #[oai(default)]
    pub platform_components: Vec<OverlayComponent>,
    /// Helm value patches: component id → (dotted key → JSON value; `null` removes the key a
    /// lower layer set).
    #[oai(default)]
    pub patches: BTreeMap<String, Patch>,
    /// Namespace ids added to every matching cluster.
    #[oai(default)]
    pub namespaces: Vec<String>,
    /// Rolebinding ids added to every matching cluster.
    #[oai(default)]
    pub rolebindings: Vec<String>,
}

/// Partial update of an overlay: present fields replace, omitted ones are kept.
#[derive(Object, Clone, Debug, Default)]
#[oai(deny_unknown_fields)]
pub struct OverlayUpdate {
    /// Must equal the path id when present.
    pub id: Option<String>,
    pub description: Option<String>,
    pub selector: Option<Selector>,
    pub priority: Option<i64>,
    pub platform_components: Option<Vec<OverlayComponent>>,
    pub patches: Option<BTreeMap<String, Patch>>,
    pub namespaces: Option<Vec<String>>,
    pub rolebindings: Option<Vec<String>>,
}

impl Overlay {
    pub fn apply(mut self, update: OverlayUpdate) -> Self {
        let OverlayUpdate {
            id: _,
            description,
            selector,
            priority,
            platform_components,
            patches,
            namespaces,
            rolebindings,
        } = update;
        if let Some(v) = description {
            self.description = v;
        }
        if let Some(v) = selector {
            self.selector = v;
        }
        if let Some(v) = priority {
            self.priority = v;
        }
        if let Some(v) = platform_components {
            self.platform_components = v;
        }
        if let Some(v) = patches {
            self.patches = v;
        }
        if let Some(v) = namespaces {
            self.namespaces = v;
        }
        if let Some(v) = rolebindings {
            self.rolebindings = v;
        }
        self
    }

    fn entry(&self, component: &str) -> Option<&OverlayComponent> {
        self.platform_components.iter().find(|c| c.id == component)
    }
}

/// Whether an overlay write (`before` → `after`, `None`: absent) can change which inputs a
/// cluster renders: its selector, its order, or what it assigns. A value edit cannot.
pub fn assignments_differ(before: Option<&Overlay>, after: Option<&Overlay>) -> bool {
    let assigns = |o: &Overlay| {
        let entries: Vec<(String, Option<bool>)> = o
            .platform_components
            .iter()
            .map(|c| (c.id.clone(), c.enabled))
            .collect();
        (
            o.selector.clone(),
            o.priority,
            entries,
            o.namespaces.clone(),
            o.rolebindings.clone(),
        )
    };
    before.map(assigns) != after.map(assigns)
}

/// The overlays that apply to a cluster, in the order they layer (priority, then id).
pub fn matching<'a>(
    overlays: &'a [Overlay],
    environment: Environment,
    labels: &BTreeMap<String, String>,
) -> Vec<&'a Overlay> {
    let mut found: Vec<&Overlay> = overlays
        .iter()
        .filter(|o| o.selector.matches(environment, labels))
        .collect();
    found.sort_by(|a, b| (a.priority, &a.id).cmp(&(b.priority, &b.id)));
    found
}

/// Where an effective value came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Layer {
    Catalog,
    Overlay(String),
    Cluster,
}

impl Layer {
    /// `catalog`, `overlay:<id>` or `cluster`.
    pub fn name(&self) -> String {
        match self {
            Layer::Catalog => "catalog".into(),
            Layer::Overlay(id) => format!("overlay:{id}"),
            Layer::Cluster => "cluster".into(),
        }
    }
}

/// One effective component of a cluster, each value with the layer that set it. `None` for
/// `oci_tag`/`component_path`: the catalog's value.
#[derive(Clone, Debug, PartialEq)]
pub struct EffectiveComponent {
    pub id: String,
    pub enabled: (bool, Layer),
    pub oci_tag: (Option<String>, Layer),
    pub component_path: (Option<String>, Layer),
    pub patch: BTreeMap<String, (Value, Layer)>,
}

/// A cluster's effective assignments and values.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Effective {
    pub components: Vec<EffectiveComponent>,
    pub namespaces: Vec<(String, Layer)>,
    pub rolebindings: Vec<(String, Layer)>,
}

/// One component's `enabled`, `oci_tag` and `component_path` on a cluster whose own entry
/// for it is `own`, under `overlays` (as `matching` orders them); `None` when neither the
/// cluster nor an overlay assigns it. Patches aside: `effective` merges those.
pub fn component_values(
    id: &str,
    own: Option<&ComponentRef>,
    overlays: &[&Overlay],
) -> Option<EffectiveComponent> {
    let mut component = EffectiveComponent {
        id: id.to_owned(),
        enabled: (true, Layer::Catalog),
        oci_tag: (None, Layer::Catalog),
        component_path: (None, Layer::Catalog),
        patch: BTreeMap::new(),
    };
    let mut assigned = own.is_some();
    for overlay in overlays {
        let Some(entry) = overlay.entry(id) else {
            continue;
        };
        let layer = || Layer::Overlay(overlay.id.clone());
        if let Some(enabled) = entry.enabled {
            component.enabled = (enabled, layer());
            assigned = true;
        }
        if let Some(tag) = &entry.oci_tag {
            component.oci_tag = (Some(tag.clone()), layer());
        }
        if let Some(path) = &entry.component_path {
            component.component_path = (Some(path.clone()), layer());
        }
    }
    if let Some(entry) = own {
        component.enabled = (entry.enabled, Layer::Cluster);
        if let Some(tag) = &entry.oci_tag {
            component.oci_tag = (Some(tag.clone()), Layer::Cluster);
        }
        if let Some(path) = &entry.component_path {
            component.component_path = (Some(path.clone()), Layer::Cluster);
        }
    }
    assigned.then_some(component)
}

/// One component on a cluster whose own entry and patch for it are `own` and `own_patch`,
/// under `overlays` (as `matching` orders them): its values and its merged patch, each with
/// the layer that set it; `None` when neither the cluster nor an overlay assigns it.
pub fn layer_component(
    id: &str,
    own: Option<&ComponentRef>,
    own_patch: Option<&Patch>,
    overlays: &[&Overlay],
) -> Option<EffectiveComponent> {
    let mut component = component_values(id, own, overlays)?;
    for overlay in overlays {
        for (key, value) in overlay.patches.get(id).into_iter().flatten() {
            set_patch_key(
                &mut component.patch,
                key,
                value,
                Layer::Overlay(overlay.id.clone()),
            );
        }
    }
    for (key, value) in own_patch.into_iter().flatten() {
        // A cluster's `null` with nothing below it is served as before overlays existed: as
        // a `null` value.
        let below = component.patch.keys().any(|k| is_within(k, key));
        if value.is_null() && !below {
            component
                .patch
                .insert(key.clone(), (value.clone(), Layer::Cluster));
        } else {
            set_patch_key(&mut component.patch, key, value, Layer::Cluster);
        }
    }
    Some(component)
}

/// The components `overlays` set anything for (entries and patches): the only ones layering
/// can change.
pub fn touched<'a>(overlays: &[&'a Overlay]) -> std::collections::BTreeSet<&'a str> {
    overlays
        .iter()
        .flat_map(|o| {
            o.platform_components
                .iter()
                .map(|e| e.id.as_str())
                .chain(o.patches.keys().map(String::as_str))
        })
        .collect()
}

/// The layers applied to one cluster: its own entry over `overlays` (as `matching` orders
/// them).
pub fn effective(cluster: &Cluster, overlays: &[&Overlay]) -> Effective {
    let own = |id: &str| cluster.platform_components.iter().find(|c| c.id == id);
    // Assigned: the cluster's own components in its order, then those the overlays assign.
    let mut assigned: Vec<&str> = cluster
        .platform_components
        .iter()
        .map(|c| c.id.as_str())
        .collect();
    for overlay in overlays {
        for entry in &overlay.platform_components {
            if entry.enabled.is_some() && !assigned.contains(&entry.id.as_str()) {
                assigned.push(&entry.id);
            }
        }
    }
    let components = assigned
        .into_iter()
        .filter_map(|id| layer_component(id, own(id), cluster.patches.get(id), overlays))
        .collect();
    let merged = |own: &[IdRef], named: fn(&Overlay) -> &Vec<String>| {
        let mut list: Vec<(String, Layer)> =
            own.iter().map(|r| (r.id.clone(), Layer::Cluster)).collect();
        for overlay in overlays {
            for id in named(overlay) {
                if !list.iter().any(|(seen, _)| seen == id) {
                    list.push((id.clone(), Layer::Overlay(overlay.id.clone())));
                }
            }
        }
        list
    };
    Effective {
        components,
        namespaces: merged(&cluster.namespaces, |o| &o.namespaces),
        rolebindings: merged(&cluster.rolebindings, |o| &o.rolebindings),
    }
}

/// Whether patch key `inner` names `outer`'s value or one inside it (`a`, `a.b` in `a`).
fn is_within(inner: &str, outer: &str) -> bool {
    if inner.contains('\\') || outer.contains('\\') {
        // `\.` escapes a dot: compare whole segments.
        return values::segments(inner).starts_with(&values::segments(outer));
    }
    inner == outer
        || (inner.len() > outer.len()
            && inner.starts_with(outer)
            && inner.as_bytes()[outer.len()] == b'.')
}

/// One layer's patch key over the keys of the layers below. A value replaces the key and
/// every key it overlaps (`a` over `a.b`, `a.b` over `a`), so the merged patch never names
/// one value twice; `null` removes the key and every key inside it.
fn set_patch_key(
    patch: &mut BTreeMap<String, (Value, Layer)>,
    key: &str,
    value: &Value,
    layer: Layer,
) {
    patch.retain(|k, _| !(is_within(k, key) || (!value.is_null() && is_within(key, k))));
    if !value.is_null() {
        patch.insert(key.to_owned(), (value.clone(), layer));
    }
}

impl Effective {
    /// The cluster as if it set every effective value itself: what the feeds are made of.
    pub fn as_cluster(&self, cluster: &Cluster) -> Cluster {
        let mut effective = cluster.clone();
        effective.platform_components = self
            .components
            .iter()
            .map(|c| ComponentRef {
                id: c.id.clone(),
                enabled: c.enabled.0,
                oci_tag: c.oci_tag.0.clone(),
                component_path: c.component_path.0.clone(),
            })
            .collect();
        effective.patches = self
            .components
            .iter()
            .filter(|c| !c.patch.is_empty() || cluster.patches.contains_key(&c.id))
            .map(|c| {
                let patch = c.patch.iter().map(|(k, (v, _))| (k.clone(), v.clone()));
                (c.id.clone(), patch.collect())
            })
            .collect();
        effective.namespaces = self
            .namespaces
            .iter()
            .map(|(id, _)| IdRef { id: id.clone() })
            .collect();
        effective.rolebindings = self
            .rolebindings
            .iter()
            .map(|(id, _)| IdRef { id: id.clone() })
            .collect();
        effective
    }
}

/// The cluster with every overlay of `all` that matches it applied (itself when none does).
pub fn apply(cluster: &Cluster, all: &[Overlay]) -> Cluster {
    let found = matching(all, cluster.environment, &cluster.labels);
    if found.is_empty() {
        return cluster.clone();
    }
    effective(cluster, &found).as_cluster(cluster)
}

// ---------------------------------------------------------------------------------------
// The effective view (GET /clusters/{id}/effective, the console's cluster page)

/// A value as the cluster's feeds carry it, and the layer that set it: `catalog`,
/// `overlay:<id>` or `cluster`.
#[derive(Object, Clone, Debug)]
pub struct LayeredValue {
    pub value: serde_json::Value,
    pub from: String,
}

/// One effective platform component of a cluster.
#[derive(Object, Clone, Debug)]
#[oai(rename = "EffectiveComponent")]
pub struct EffectiveComponentView {
    pub id: String,
    pub enabled: LayeredValue,
    pub oci_tag: LayeredValue,
    pub component_path: LayeredValue,
    /// Patch key → value and layer.
    pub patches: std::collections::BTreeMap<String, LayeredValue>,
}

/// A namespace or rolebinding the cluster gets, and the layer that assigned it.
#[derive(Object, Clone, Debug)]
pub struct EffectiveRef {
    pub id: String,
    pub from: String,
}

/// What a cluster's feeds are made of: its own entry over the overlays that match it, over
/// the catalog, each value with the layer it came from.
#[derive(Object, Clone, Debug)]
pub struct EffectiveCluster {
    pub id: String,
    /// The overlays that match the cluster, in the order they layer.
    pub overlays: Vec<String>,
    pub platform_components: Vec<EffectiveComponentView>,
    pub namespaces: Vec<EffectiveRef>,
    pub rolebindings: Vec<EffectiveRef>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cluster(
        env: Environment,
        labels: &[(&str, &str)],
        refs: &[(&str, bool, Option<&str>)],
    ) -> Cluster {
        Cluster {
            id: "c".into(),
            cluster_name: "c".into(),
            cluster_dns: "c.example.com".into(),
            environment: env,
            labels: labels
                .iter()
                .map(|(k, v)| ((*k).into(), (*v).into()))
                .collect(),
            platform_components: refs
                .iter()
                .map(|(id, enabled, tag)| ComponentRef {
                    id: (*id).into(),
                    enabled: *enabled,
                    oci_tag: tag.map(str::to_owned),
                    component_path: None,
                })
                .collect(),
            namespaces: vec![IdRef { id: "apps".into() }],
            rolebindings: vec![],
            patches: BTreeMap::new(),
            node_count: None,
            vm_image: None,
            k0s_version: None,
        }
    }

    fn overlay(id: &str, priority: i64, json: Value) -> Overlay {
        let mut value = json;
        value["id"] = json!(id);
        value["priority"] = json!(priority);
        use poem_openapi::types::ParseFromJSON;
        Overlay::parse_from_json(Some(value)).unwrap()
    }

    #[test]
    fn selectors_match_environment_and_every_label() {
        let prod_edge = Selector {
            environment: Some(Environment::Prod),
            labels: BTreeMap::from([("tier".into(), "edge".into())]),
        };
        let labels = BTreeMap::from([("tier".into(), "edge".into()), ("x".into(), "y".into())]);
        assert!(prod_edge.matches(Environment::Prod, &labels));
        assert!(!prod_edge.matches(Environment::Dev, &labels));
        assert!(!prod_edge.matches(Environment::Prod, &BTreeMap::new()));
        assert!(Selector::default().matches(Environment::Dev, &BTreeMap::new()));
    }

    #[test]
    fn the_highest_layer_that_sets_a_field_wins_and_a_cluster_null_sets_nothing() {
        let low = overlay(
            "a-low",
            0,
            json!({"platform_components": [{"id": "traefik", "oci_tag": "32.0.0"}]}),
        );
        let high = overlay(
            "b-high",
            10,
            json!({"platform_components": [{"id": "traefik", "oci_tag": "32.1.0", "component_path": "edge/traefik"}]}),
        );
        let all = [high.clone(), low.clone()];
        let c = cluster(Environment::Prod, &[], &[("traefik", true, None)]);
        let e = effective(&c, &matching(&all, c.environment, &c.labels));
        let t = &e.components[0];
        assert_eq!(
            t.oci_tag,
            (Some("32.1.0".into()), Layer::Overlay("b-high".into()))
        );
        assert_eq!(t.component_path.1, Layer::Overlay("b-high".into()));
        assert_eq!(
            t.enabled,
            (true, Layer::Cluster),
            "a cluster's own entry always sets enabled"
        );
        let pinned = cluster(Environment::Prod, &[], &[("traefik", true, Some("31.0.0"))]);
        let e = effective(&pinned, &matching(&all, pinned.environment, &pinned.labels));
        assert_eq!(
            e.components[0].oci_tag,
            (Some("31.0.0".into()), Layer::Cluster)
        );
    }

    #[test]
    fn values_only_where_assigned_and_assignment_only_with_enabled() {
        let values = overlay(
            "pins",
            0,
            json!({"platform_components": [{"id": "traefik", "oci_tag": "32"}]}),
        );
        let assigns = overlay(
            "edge",
            0,
            json!({"platform_components": [{"id": "kyverno", "enabled": true}],
            "namespaces": ["apps", "kyverno"]}),
        );
        let c = cluster(Environment::Dev, &[], &[("cert-manager", true, None)]);
        let e = effective(&c, &[&values, &assigns]);
        let ids: Vec<&str> = e.components.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(
            ids,
            ["cert-manager", "kyverno"],
            "traefik not added: only values"
        );
        assert_eq!(
            e.components[1].enabled,
            (true, Layer::Overlay("edge".into()))
        );
        let namespaces: Vec<&str> = e.namespaces.iter().map(|(id, _)| id.as_str()).collect();
        assert_eq!(
            namespaces,
            ["apps", "kyverno"],
            "the cluster's own first, no duplicates"
        );
    }

    #[test]
    fn patches_merge_per_key_and_null_removes_what_a_lower_layer_set() {
        let low = overlay(
            "a",
            0,
            json!({"patches": {"traefik": {"replicas": 2, "resources.limits.memory": "256Mi"}}}),
        );
        let high = overlay(
            "b",
            1,
            json!({"patches": {"traefik": {"replicas": 3, "resources.limits.memory": null}}}),
        );
        let mut c = cluster(Environment::Dev, &[], &[("traefik", true, None)]);
        c.patches.insert(
            "traefik".into(),
            BTreeMap::from([("service.type".into(), json!("NodePort"))]),
        );
        let e = effective(&c, &[&low, &high]);
        let patch = &e.components[0].patch;
        assert_eq!(
            patch.get("replicas"),
            Some(&(json!(3), Layer::Overlay("b".into())))
        );
        assert!(!patch.contains_key("resources.limits.memory"));
        assert_eq!(patch.get("service.type").unwrap().1, Layer::Cluster);
        let served = e.as_cluster(&c);
        assert_eq!(served.patches["traefik"].len(), 2);
    }

    #[test]
    fn no_matching_overlay_leaves_the_cluster_as_it_is() {
        let prod_only = overlay(
            "prod",
            0,
            json!({"selector": {"environment": "prod"},
            "platform_components": [{"id": "kyverno", "enabled": true}]}),
        );
        let mut c = cluster(Environment::Dev, &[], &[("traefik", true, None)]);
        c.patches.insert(
            "traefik".into(),
            BTreeMap::from([("x".into(), Value::Null)]),
        );
        assert_eq!(apply(&c, std::slice::from_ref(&prod_only)), c);
        assert_eq!(
            effective(&c, &[]).as_cluster(&c),
            c,
            "a cluster's own null is kept"
        );
    }
}
