//! The Flux feeds encoded straight to bytes: the catalog pre-encoded into JSON fragments once,
//! each cluster a compact list of references into it. A feed is then a concatenation of byte
//! slices — no JSON tree — and exactly the bytes `merge` + serde_json give (tests compare).
//!
//! The feed cache keeps clusters in this form for polls; the write path encodes every feed a
//! write touches with it before commit (size and input limits, dependency closure, dry-run
//! previews), so both agree byte for byte.

use std::collections::HashMap;
use std::sync::Arc;

use poem_openapi::types::ToJSON;
use serde::Serialize;

use std::collections::BTreeMap;

use super::model::{
    ComponentRef as ModelRef, Environment, Namespace, Patch, PlatformComponent, Rolebinding,
};
use super::overlay::{self, Overlay};
use super::validate::quoted_list;

/// The three per-cluster feeds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Feed {
    PlatformComponents,
    Namespaces,
    Rolebindings,
}

impl Feed {
    pub const ALL: [Feed; 3] = [
        Feed::PlatformComponents,
        Feed::Namespaces,
        Feed::Rolebindings,
    ];

    /// The last path segment of the feed's URL.
    pub fn segment(self) -> &'static str {
        match self {
            Feed::PlatformComponents => "platform-components",
            Feed::Namespaces => "namespaces",
            Feed::Rolebindings => "rolebindings",
        }
    }

    pub fn path(self, cluster_dns: &str) -> String {
        format!("/api/v2/flux/clusters/{cluster_dns}/{}", self.segment())
    }

    /// Position in per-feed arrays.
    pub fn index(self) -> usize {
        self as usize
    }
}

/// JSON text of a serializable value (a string, a map): escaping exactly as serde_json does.
pub fn json_text<T: Serialize + ?Sized>(value: &T) -> Box<[u8]> {
    serde_json::to_vec(value)
        .unwrap_or_default()
        .into_boxed_slice()
}

/// A catalog component split around the parts a cluster reference can override.
struct ComponentFragments {
    /// `{"id":"…","component_path":`
    head: Box<[u8]>,
    /// The catalog `component_path` as a JSON string.
    path: Box<[u8]>,
    /// `,"component_version":…,"cluster_env_enabled":…,"depends_on":[…],"enabled":`
    middle: Box<[u8]>,
    /// `,"source":{"oci_url":"…","oci_tag":`
    source: Box<[u8]>,
    /// The catalog `oci_tag` as a JSON string.
    tag: Box<[u8]>,
}

impl ComponentFragments {
    fn new(c: &PlatformComponent) -> Self {
        let mut head = br#"{"id":"#.to_vec();
        head.extend_from_slice(&json_text(&c.id));
        head.extend_from_slice(br#","component_path":"#);
        let mut middle = br#","component_version":"#.to_vec();
        middle.extend_from_slice(&json_text(&c.component_version));
        middle.extend_from_slice(br#","cluster_env_enabled":"#);
        middle.extend_from_slice(if c.cluster_env_enabled {
            b"true"
        } else {
            b"false"
        });
        middle.extend_from_slice(br#","depends_on":"#);
        middle.extend_from_slice(&json_text(&c.depends_on));
        middle.extend_from_slice(br#","enabled":"#);
        let mut source = br#","source":{"oci_url":"#.to_vec();
        source.extend_from_slice(&json_text(&c.oci_url));
        source.extend_from_slice(br#","oci_tag":"#);
        ComponentFragments {
            head: head.into(),
            path: json_text(&c.component_path),
            middle: middle.into(),
            source: source.into(),
            tag: json_text(&c.oci_tag),
        }
    }
}

/// Everything of a namespace or rolebinding input before its `"cluster":` value.
fn definition_head(pairs: &[(&str, serde_json::Value)]) -> Box<[u8]> {
    let mut head = b"{".to_vec();
    for (key, value) in pairs {
        head.extend_from_slice(&json_text(key));
        head.push(b':');
        head.extend_from_slice(&json_text(value));
        head.push(b',');
    }
    head.extend_from_slice(br#""cluster":"#);
    head.into()
}

fn namespace_head(n: &Namespace) -> Box<[u8]> {
    definition_head(&[
        ("id", n.id.to_json().unwrap_or_default()),
        ("labels", n.labels.to_json().unwrap_or_default()),
        ("annotations", n.annotations.to_json().unwrap_or_default()),
    ])
}

fn rolebinding_head(r: &Rolebinding) -> Box<[u8]> {
    definition_head(&[
        ("id", r.id.to_json().unwrap_or_default()),
        ("role", r.role.to_json().unwrap_or_default()),
        ("subjects", r.subjects.to_json().unwrap_or_default()),
    ])
}

/// The catalog at one revision, pre-encoded, with each component's dependencies as indices.
pub struct Catalog {
    components: Vec<ComponentFragments>,
    component_ids: Vec<String>,
    namespace_ids: Vec<String>,
    rolebinding_ids: Vec<String>,
    depends_on: Vec<Box<[u32]>>,
    pub component_index: HashMap<String, u32>,
    namespaces: Vec<Box<[u8]>>,
    pub namespace_index: HashMap<String, u32>,
    rolebindings: Vec<Box<[u8]>>,
    pub rolebinding_index: HashMap<String, u32>,
    /// Layered between the catalog and each cluster's own entry (`overlay`).
    overlays: Vec<Overlay>,
}

fn index_of<'a>(ids: impl Iterator<Item = &'a String>) -> HashMap<String, u32> {
    ids.enumerate()
        .map(|(i, id)| (id.clone(), i as u32))
        .collect()
}

impl Catalog {
    /// Every id of the catalog (components, namespaces, rolebindings).
    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.component_ids
            .iter()
            .chain(&self.namespace_ids)
            .chain(&self.rolebinding_ids)
            .map(String::as_str)
    }

    pub fn new(
        components: &[PlatformComponent],
        namespaces: &[Namespace],
        rolebindings: &[Rolebinding],
    ) -> Catalog {
        let component_index = index_of(components.iter().map(|c| &c.id));
        let depends_on = components
            .iter()
            .map(|c| {
                c.depends_on
                    .iter()
                    .filter_map(|d| component_index.get(d).copied())
                    .collect()
            })
            .collect();
        Catalog {
            components: components.iter().map(ComponentFragments::new).collect(),
            component_ids: components.iter().map(|c| c.id.clone()).collect(),
            namespace_ids: namespaces.iter().map(|n| n.id.clone()).collect(),
            rolebinding_ids: rolebindings.iter().map(|r| r.id.clone()).collect(),
            depends_on,
            component_index,
            namespace_index: index_of(namespaces.iter().map(|n| &n.id)),
            namespaces: namespaces.iter().map(namespace_head).collect(),
            rolebinding_index: index_of(rolebindings.iter().map(|r| &r.id)),
            rolebindings: rolebindings.iter().map(rolebinding_head).collect(),
            overlays: Vec::new(),
        }
    }

    /// The catalog with the overlays the clusters' feeds are layered with.
    pub fn with_overlays(mut self, overlays: Vec<Overlay>) -> Catalog {
        self.overlays = overlays;
        self
    }

    /// Whether any overlay exists (else no cluster's labels need reading).
    pub fn has_overlays(&self) -> bool {
        !self.overlays.is_empty()
    }

    pub fn overlays(&self) -> &[Overlay] {
        &self.overlays
    }

    /// Whether clusters referencing `other` read the same in this catalog: every id at the
    /// same index (the contents may differ).
    pub fn same_layout(&self, other: &Catalog) -> bool {
        self.component_ids == other.component_ids
            && self.namespace_ids == other.namespace_ids
            && self.rolebinding_ids == other.rolebinding_ids
    }
}

/// "No override": the catalog value applies.
const NONE: u32 = u32::MAX;

/// A cluster's reference to a catalog component. Overrides are ids into interned fragments
/// (fleets repeat the same tags and patches on many clusters).
#[derive(Clone)]
struct ComponentRef {
    component: u32,
    enabled: bool,
    path: u32,
    tag: u32,
    patch: u32,
    /// The patch expanded into typed Helm values.
    values: u32,
}

/// One cluster as references into the catalog.
#[derive(Clone)]
pub struct ClusterRefs {
    /// `{"name":…,"dns":…,"environment":…}`
    info: Box<[u8]>,
    components: Box<[ComponentRef]>,
    namespaces: Box<[u32]>,
    rolebindings: Box<[u32]>,
}

/// Override texts shared by the clusters encoded with them.
#[derive(Clone, Default)]
pub struct Fragments {
    texts: Vec<Arc<[u8]>>,
    ids: HashMap<Arc<[u8]>, u32>,
    /// A patch fragment's typed values, expanded once however many clusters share it.
    values_of: HashMap<u32, u32>,
}

impl Fragments {
    fn intern(&mut self, text: Option<Box<[u8]>>) -> u32 {
        let Some(text) = text else { return NONE };
        if let Some(id) = self.ids.get(&*text) {
            return *id;
        }
        let id = self.texts.len() as u32;
        let shared: Arc<[u8]> = Arc::from(text);
        self.texts.push(shared.clone());
        self.ids.insert(shared, id);
        id
    }

    /// The typed values of the patch fragment `patch` (see `values::expand_text`).
    fn values_for(&mut self, patch: u32) -> u32 {
        if patch == NONE {
            return NONE;
        }
        if let Some(values) = self.values_of.get(&patch) {
            return *values;
        }
        let text = super::values::expand_text(Some(&self.texts[patch as usize]));
        let values = self.intern(text);
        self.values_of.insert(patch, values);
        values
    }

    fn get<'a>(&'a self, id: u32, default: &'a [u8]) -> &'a [u8] {
        if id == NONE {
            default
        } else {
            &self.texts[id as usize]
        }
    }
}

/// A component reference as read, with its override texts.
pub struct LoadedRef {
    pub component: u32,
    pub enabled: bool,
    /// JSON texts of the overrides (`"v1.2"`, `{"replicas":2}`).
    pub path: Option<Box<[u8]>>,
    pub tag: Option<Box<[u8]>>,
    pub patch: Option<Box<[u8]>>,
}

/// A cluster as read from storage, before its fragments are interned.
pub struct LoadedCluster {
    pub id: String,
    pub cluster_dns: String,
    /// `{"name":…,"dns":…,"environment":…}`
    pub info: Box<[u8]>,
    pub components: Vec<LoadedRef>,
    pub namespaces: Box<[u32]>,
    pub rolebindings: Box<[u32]>,
}

/// The `cluster` value of every input of a cluster's feeds.
pub fn cluster_info(name: &str, dns: &str, environment: &str) -> Box<[u8]> {
    json_text(&serde_json::json!({"name": name, "dns": dns, "environment": environment}))
}

impl LoadedCluster {
    /// The cluster with the catalog's overlays that match it layered in (README, "Overlays");
    /// itself when none matches. The layering is `overlay::layer_component`'s, applied only
    /// to the components the matching overlays set something for: the others keep their
    /// encoded references untouched (a fleet-wide overlay of one component costs one
    /// component per cluster, not thirty).
    pub fn layered(
        mut self,
        catalog: &Catalog,
        environment: Environment,
        labels: &BTreeMap<String, String>,
    ) -> Result<LoadedCluster, String> {
        let found = overlay::matching(&catalog.overlays, environment, labels);
        if found.is_empty() {
            return Ok(self);
        }
        let text = |bytes: &Option<Box<[u8]>>| -> Result<Option<String>, String> {
            bytes
                .as_deref()
                .map(serde_json::from_slice)
                .transpose()
                .map_err(|err| err.to_string())
        };
        let encoded = |c: &overlay::EffectiveComponent| -> Result<LoadedRef, String> {
            let component = *catalog
                .component_index
                .get(&c.id)
                .ok_or_else(|| format!("an overlay names the unknown component '{}'", c.id))?;
            let patch: Option<Patch> = (!c.patch.is_empty()).then(|| {
                c.patch
                    .iter()
                    .map(|(k, (v, _))| (k.clone(), v.clone()))
                    .collect()
            });
            Ok(LoadedRef {
                component,
                enabled: c.enabled.0,
                path: c.component_path.0.as_deref().map(json_text),
                tag: c.oci_tag.0.as_deref().map(json_text),
                patch: patch.as_ref().map(json_text),
            })
        };
        let touched = overlay::touched(&found);
        let mut listed = std::collections::HashSet::new();
        for r in &mut self.components {
            let id = catalog.component_ids[r.component as usize].as_str();
            listed.insert(id);
            if !touched.contains(id) {
                continue;
            }
            let own = ModelRef {
                id: id.to_owned(),
                enabled: r.enabled,
                oci_tag: text(&r.tag)?,
                component_path: text(&r.path)?,
            };
            let own_patch: Option<Patch> = r
                .patch
                .as_deref()
                .map(serde_json::from_slice)
                .transpose()
                .map_err(|err| err.to_string())?;
            if let Some(layered) =
                overlay::layer_component(id, Some(&own), own_patch.as_ref(), &found)
            {
                let had_patch = r.patch.is_some();
                *r = encoded(&layered)?;
                // A cluster's own patch stays (as `{}`) when the layers empty it.
                if had_patch && r.patch.is_none() {
                    r.patch = Some(json_text(&Patch::new()));
                }
            }
        }
        // Components the overlays assign, in overlay order, after the cluster's own.
        for o in &found {
            for entry in &o.platform_components {
                if entry.enabled.is_none() || !listed.insert(entry.id.as_str()) {
                    continue;
                }
                if let Some(layered) = overlay::layer_component(&entry.id, None, None, &found) {
                    self.components.push(encoded(&layered)?);
                }
            }
        }
        let add = |list: &mut Box<[u32]>,
                   named: fn(&overlay::Overlay) -> &Vec<String>,
                   index: &HashMap<String, u32>,
                   kind: &str|
         -> Result<(), String> {
            let mut ids: Vec<u32> = list.to_vec();
            for o in &found {
                for id in named(o) {
                    let i = *index
                        .get(id)
                        .ok_or_else(|| format!("an overlay names the unknown {kind} '{id}'"))?;
                    if !ids.contains(&i) {
                        ids.push(i);
                    }
                }
            }
            *list = ids.into_boxed_slice();
            Ok(())
        };
        add(
            &mut self.namespaces,
            |o| &o.namespaces,
            &catalog.namespace_index,
            "namespace",
        )?;
        add(
            &mut self.rolebindings,
            |o| &o.rolebindings,
            &catalog.rolebinding_index,
            "rolebinding",
        )?;
        Ok(self)
    }

    pub fn intern(self, fragments: &mut Fragments) -> ClusterRefs {
        ClusterRefs {
            info: self.info,
            components: self
                .components
                .into_iter()
                .map(|r| {
                    let patch = fragments.intern(r.patch);
                    ComponentRef {
                        component: r.component,
                        enabled: r.enabled,
                        path: fragments.intern(r.path),
                        tag: fragments.intern(r.tag),
                        values: fragments.values_for(patch),
                        patch,
                    }
                })
                .collect(),
            namespaces: self.namespaces,
            rolebindings: self.rolebindings,
        }
    }
}

/// One input of a feed, as `ClusterRefs::for_each_input` hands it out.
pub struct Input<'a> {
    pub id: &'a str,
    /// The input's JSON object, exactly as inside the feed.
    pub json: &'a [u8],
    /// Platform components: the reference's `enabled`; always `true` otherwise.
    pub enabled: bool,
}

impl ClusterRefs {
    /// Encodes each input of `feed` in order, handing it to `visit`; `scratch` is reused.
    pub fn for_each_input(
        &self,
        catalog: &Catalog,
        fragments: &Fragments,
        feed: Feed,
        scratch: &mut Vec<u8>,
        mut visit: impl FnMut(Input<'_>),
    ) {
        match feed {
            Feed::PlatformComponents => {
                for r in self.components.iter() {
                    scratch.clear();
                    self.component_input(catalog, fragments, r, scratch);
                    visit(Input {
                        id: &catalog.component_ids[r.component as usize],
                        json: scratch,
                        enabled: r.enabled,
                    });
                }
            }
            Feed::Namespaces | Feed::Rolebindings => {
                let (refs, heads, ids) = if feed == Feed::Namespaces {
                    (
                        &self.namespaces,
                        &catalog.namespaces,
                        &catalog.namespace_ids,
                    )
                } else {
                    (
                        &self.rolebindings,
                        &catalog.rolebindings,
                        &catalog.rolebinding_ids,
                    )
                };
                for index in refs.iter() {
                    scratch.clear();
                    scratch.extend_from_slice(&heads[*index as usize]);
                    scratch.extend_from_slice(&self.info);
                    scratch.push(b'}');
                    visit(Input {
                        id: &ids[*index as usize],
                        json: scratch,
                        enabled: true,
                    });
                }
            }
        }
    }

    fn component_input(
        &self,
        catalog: &Catalog,
        fragments: &Fragments,
        r: &ComponentRef,
        out: &mut Vec<u8>,
    ) {
        let c = &catalog.components[r.component as usize];
        out.extend_from_slice(&c.head);
        out.extend_from_slice(fragments.get(r.path, &c.path));
        out.extend_from_slice(&c.middle);
        out.extend_from_slice(if r.enabled { b"true" } else { b"false" });
        out.extend_from_slice(br#","patches":"#);
        out.extend_from_slice(fragments.get(r.patch, b"{}"));
        out.extend_from_slice(br#","values":"#);
        out.extend_from_slice(fragments.get(r.values, b"{}"));
        out.extend_from_slice(br#","cluster":"#);
        out.extend_from_slice(&self.info);
        out.extend_from_slice(&c.source);
        out.extend_from_slice(fragments.get(r.tag, &c.tag));
        out.extend_from_slice(b"}}");
    }

    /// The length of the feed's body and its number of inputs, without building it: what
    /// the write checks need of every feed a write touches.
    pub fn encoded_len(
        &self,
        catalog: &Catalog,
        fragments: &Fragments,
        feed: Feed,
    ) -> (usize, usize) {
        const ENVELOPE: usize = r#"{"inputs":[]}"#.len();
        let (count, inputs) = match feed {
            Feed::PlatformComponents => {
                const FIXED: usize = r#","patches":"#.len()
                    + r#","values":"#.len()
                    + r#","cluster":"#.len()
                    + "}}".len();
                let bytes: usize = self
                    .components
                    .iter()
                    .map(|r| {
                        let c = &catalog.components[r.component as usize];
                        c.head.len()
                            + fragments.get(r.path, &c.path).len()
                            + c.middle.len()
                            + if r.enabled { 4 } else { 5 }
                            + fragments.get(r.patch, b"{}").len()
                            + fragments.get(r.values, b"{}").len()
                            + self.info.len()
                            + c.source.len()
                            + fragments.get(r.tag, &c.tag).len()
                            + FIXED
                    })
                    .sum();
                (self.components.len(), bytes)
            }
            Feed::Namespaces | Feed::Rolebindings => {
                let (ids, heads) = if feed == Feed::Namespaces {
                    (&self.namespaces, &catalog.namespaces)
                } else {
                    (&self.rolebindings, &catalog.rolebindings)
                };
                let bytes: usize = ids
                    .iter()
                    .map(|id| heads[*id as usize].len() + self.info.len() + 1)
                    .sum();
                (ids.len(), bytes)
            }
        };
        (ENVELOPE + inputs + count.saturating_sub(1), count)
    }

    /// Appends the feed's exact response body to `out`; returns the number of inputs.
    pub fn encode_into(
        &self,
        catalog: &Catalog,
        fragments: &Fragments,
        feed: Feed,
        out: &mut Vec<u8>,
    ) -> usize {
        out.extend_from_slice(br#"{"inputs":["#);
        let count = match feed {
            Feed::PlatformComponents => {
                for (i, r) in self.components.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    self.component_input(catalog, fragments, r, out);
                }
                self.components.len()
            }
            Feed::Namespaces | Feed::Rolebindings => {
                let (ids, heads) = if feed == Feed::Namespaces {
                    (&self.namespaces, &catalog.namespaces)
                } else {
                    (&self.rolebindings, &catalog.rolebindings)
                };
                for (i, id) in ids.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    out.extend_from_slice(&heads[*id as usize]);
                    out.extend_from_slice(&self.info);
                    out.push(b'}');
                }
                ids.len()
            }
        };
        out.extend_from_slice(b"]}");
        count
    }

    /// The feed's exact response body.
    pub fn encode(&self, catalog: &Catalog, fragments: &Fragments, feed: Feed) -> Vec<u8> {
        let mut out = Vec::with_capacity(64 + self.components.len() * 420);
        self.encode_into(catalog, fragments, feed, &mut out);
        out
    }

    /// The components an enabled component needs (transitively) that are not assigned and
    /// enabled on this cluster — their HelmReleases would wait forever — sorted by id.
    pub fn missing_dependencies<'c>(&self, catalog: &'c Catalog) -> Vec<&'c str> {
        // Flags over the catalog instead of hash sets: this runs for every cluster a catalog
        // edit touches.
        let size = catalog.component_ids.len();
        let mut enabled = vec![false; size];
        for r in self.components.iter().filter(|r| r.enabled) {
            enabled[r.component as usize] = true;
        }
        let mut seen = vec![false; size];
        let mut missing = vec![false; size];
        let mut queue: Vec<u32> = self
            .components
            .iter()
            .filter(|r| r.enabled)
            .map(|r| r.component)
            .collect();
        while let Some(component) = queue.pop() {
            if std::mem::replace(&mut seen[component as usize], true) {
                continue;
            }
            for &dependency in catalog.depends_on[component as usize].iter() {
                if !enabled[dependency as usize] {
                    missing[dependency as usize] = true;
                }
                queue.push(dependency);
            }
        }
        let mut names: Vec<&'c str> = missing
            .iter()
            .enumerate()
            .filter(|(_, m)| **m)
            .map(|(i, _)| catalog.component_ids[i].as_str())
            .collect();
        names.sort_unstable();
        names
    }
}

/// The warning (or, strict, the refusal) for a cluster's missing dependencies.
pub fn missing_dependencies_message(cluster_id: &str, missing: &[&str]) -> String {
    let names: Vec<String> = missing.iter().map(|m| (*m).to_owned()).collect();
    format!(
        "cluster '{cluster_id}': enabled components depend on {} which {} not assigned and enabled on it",
        quoted_list(&names),
        if missing.len() == 1 { "is" } else { "are" }
    )
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn component(id: &str, depends_on: &[&str]) -> PlatformComponent {
        PlatformComponent {
            id: id.into(),
            component_path: format!("charts/{id}"),
            component_version: "1.0.0".into(),
            oci_url: "oci://r.example.com/\"quoted\"".into(),
            oci_tag: "1.0.0".into(),
            depends_on: depends_on.iter().map(|d| (*d).to_owned()).collect(),
            cluster_env_enabled: true,
        }
    }

    fn sample() -> (Catalog, ClusterRefs, Fragments) {
        let namespace = Namespace {
            id: "apps".into(),
            labels: BTreeMap::from([("team".to_owned(), "a".to_owned())]),
            annotations: BTreeMap::new(),
        };
        let catalog = Catalog::new(
            &[
                component("a", &[]),
                component("b", &["a"]),
                component("c", &["b"]),
            ],
            &[namespace],
            &[],
        );
        let loaded = LoadedCluster {
            id: "x".into(),
            cluster_dns: "x.example.com".into(),
            info: cluster_info("x", "x.example.com", "dev"),
            components: vec![
                LoadedRef {
                    component: 2,
                    enabled: true,
                    path: None,
                    tag: Some(json_text("2.0")),
                    patch: None,
                },
                LoadedRef {
                    component: 1,
                    enabled: false,
                    path: Some(json_text("custom/b")),
                    tag: None,
                    patch: Some(br#"{"replicas":2}"#.as_slice().into()),
                },
            ],
            namespaces: vec![0].into(),
            rolebindings: Box::default(),
        };
        let mut fragments = Fragments::default();
        let refs = loaded.intern(&mut fragments);
        (catalog, refs, fragments)
    }

    #[test]
    fn the_computed_length_is_the_encoded_length_for_every_feed() {
        let (catalog, refs, fragments) = sample();
        for feed in Feed::ALL {
            let body = refs.encode(&catalog, &fragments, feed);
            let parsed: serde_json::Value = serde_json::from_slice(&body).unwrap();
            let inputs = parsed["inputs"].as_array().unwrap().len();
            assert_eq!(
                refs.encoded_len(&catalog, &fragments, feed),
                (body.len(), inputs),
                "{feed:?}"
            );
        }
    }

    #[test]
    fn missing_dependencies_follow_the_closure_of_enabled_components() {
        let (catalog, refs, _) = sample();
        // c (enabled) needs b (assigned but disabled) and, through it, a (not assigned).
        assert_eq!(refs.missing_dependencies(&catalog), ["a", "b"]);
        assert_eq!(
            missing_dependencies_message("x", &["a", "b"]),
            "cluster 'x': enabled components depend on 'a', 'b' which are not assigned and enabled on it"
        );
    }
}
