//! The five CRUD resources behind one interface, so create / get / update / delete are
//! written once (the write pipeline, `write.rs`) and every resource gets the same
//! transaction discipline; the hooks say what is particular to a resource (the feeds its
//! writes touch, what may refuse them, what they take away from Flux).

use rusqlite::Connection;
use serde_json::Value;

use super::{clusters, components, namespaces, overlays, rolebindings, windows};
use crate::domain::blast::{self, FeedShrink};
use crate::domain::encode::Feed;
use crate::domain::model::{
    Cluster, ClusterUpdate, Namespace, NamespaceUpdate, PlatformComponent, PlatformComponentUpdate,
    Rolebinding, RolebindingUpdate,
};
use crate::domain::overlay::{self, Overlay, OverlayUpdate};
use crate::domain::validate;
use crate::domain::window::{Window, WindowUpdate};
use crate::error::Result;

pub trait Resource:
    Sized + Send + 'static + poem_openapi::types::ParseFromJSON + poem_openapi::types::ToJSON
{
    /// Singular name used in messages ("platform component").
    const KIND: &'static str;
    /// The collection's path segment, also the resource's kind in the audit trail.
    const COLLECTION: &'static str;
    /// The partial-update document of `PUT`.
    type Update: Send + 'static;

    fn id(&self) -> &str;
    fn update_id(update: &Self::Update) -> Option<&str>;
    /// Checks that need no database.
    fn validate(&self) -> Result<()>;
    /// Present fields of `update` replace this document's.
    fn apply(self, update: Self::Update) -> Self;

    fn get(conn: &Connection, id: &str) -> Result<Option<Self>>;
    fn insert(conn: &Connection, value: &Self) -> Result<()>;
    fn update(conn: &Connection, value: &Self) -> Result<()>;
    fn delete(conn: &Connection, id: &str) -> Result<Self>;
    /// Ids of the clusters whose feeds a write of this resource can change (read after the
    /// write, so for its new state).
    fn affected_clusters(conn: &Connection, id: &str) -> Result<Vec<String>>;
    /// Ids of the clusters the resource reached before the write (`before`: its stored
    /// state), when that can differ from after it (an overlay's selector).
    fn affected_before(conn: &Connection, before: &Value) -> Result<Vec<String>> {
        let _ = (conn, before);
        Ok(Vec::new())
    }
    /// A write of it changes what the feed cache keeps of each cluster it reaches (the
    /// cluster's own entries, or the overlays merged into them). Catalog records do not: the
    /// cache encodes every cluster against the catalog of its snapshot, so their writes keep
    /// the cached clusters (a catalog edit on 100,000 clusters does not reload them all).
    const CHANGES_CLUSTER_ENTRIES: bool = true;
    /// The DNS name a stored state of this resource is polled at (a cluster's), if any.
    fn served_at(value: &Value) -> Option<&str> {
        let _ = value;
        None
    }
    /// The feeds of those clusters a write of this resource can change.
    const FEEDS: &'static [Feed];
    /// The feeds one write (from `before` to `after`) can change: `FEEDS` unless the
    /// resource knows better.
    fn feeds_of(before: Option<&Value>, after: Option<&Value>) -> &'static [Feed] {
        let _ = (before, after);
        Self::FEEDS
    }
    /// Refuses a write (by `actor`) that the inventory's state forbids now.
    fn guard_write(conn: &Connection, id: &str, actor: &str) -> Result<()> {
        let _ = (conn, id, actor);
        Ok(())
    }
    /// What a write of this record from `before` to `after` takes away from Flux (the blast
    /// radius), per cluster: only clusters and overlays assign inputs, so only their writes
    /// can. `layers`: the overlays as the transaction sees them.
    fn shrinks(
        conn: &Connection,
        layers: &mut Layers,
        id: &str,
        before: Option<&Value>,
        after: Option<&Value>,
    ) -> Result<Vec<(String, Vec<FeedShrink>)>> {
        let _ = (conn, layers, id, before, after);
        Ok(Vec::new())
    }
}

/// The overlays as a write transaction sees them, loaded once (an overlay write reloads them).
#[derive(Default)]
pub struct Layers {
    loaded: Option<Vec<Overlay>>,
}

impl Layers {
    pub fn get(&mut self, conn: &Connection) -> Result<&[Overlay]> {
        if self.loaded.is_none() {
            self.loaded = Some(overlays::all(conn)?);
        }
        Ok(self.loaded.as_deref().unwrap_or_default())
    }

    fn invalidate(&mut self) {
        self.loaded = None;
    }
}

fn parse<R: Resource>(value: Option<&Value>) -> Option<R> {
    value.and_then(|value| R::parse_from_json(Some(value.clone())).ok())
}

/// A cluster's state as its feeds serve it: with the matching overlays applied.
fn served(cluster: &Cluster, overlays: &[Overlay]) -> Option<Value> {
    poem_openapi::types::ToJSON::to_json(&overlay::apply(cluster, overlays))
}

fn clusters_using(conn: &Connection, table: &str, column: &str, id: &str) -> Result<Vec<String>> {
    super::sql::query_ids(
        conn,
        &format!("SELECT cluster_id FROM {table} WHERE {column} = ?1 ORDER BY cluster_id"),
        id,
    )
}

impl Resource for Cluster {
    const COLLECTION: &'static str = "clusters";
    const FEEDS: &'static [Feed] = &Feed::ALL;
    const KIND: &'static str = "cluster";
    type Update = ClusterUpdate;

    fn id(&self) -> &str {
        &self.id
    }
    fn update_id(update: &ClusterUpdate) -> Option<&str> {
        update.id.as_deref()
    }
    fn validate(&self) -> Result<()> {
        validate::cluster(self)
    }
    fn apply(self, update: ClusterUpdate) -> Self {
        Cluster::apply(self, update)
    }
    fn get(conn: &Connection, id: &str) -> Result<Option<Self>> {
        clusters::get(conn, id)
    }
    fn insert(conn: &Connection, value: &Self) -> Result<()> {
        clusters::insert(conn, value)
    }
    fn update(conn: &Connection, value: &Self) -> Result<()> {
        clusters::replace(conn, value)
    }
    fn delete(conn: &Connection, id: &str) -> Result<Self> {
        clusters::delete(conn, id)
    }
    fn affected_clusters(conn: &Connection, id: &str) -> Result<Vec<String>> {
        let _ = conn;
        Ok(vec![id.to_owned()])
    }
    fn served_at(value: &Value) -> Option<&str> {
        value["cluster_dns"].as_str()
    }
    /// Judged on the served states: an input an overlay still assigns is not lost, one an
    /// overlay stops assigning (new labels, another environment) is.
    fn shrinks(
        conn: &Connection,
        layers: &mut Layers,
        id: &str,
        before: Option<&Value>,
        after: Option<&Value>,
    ) -> Result<Vec<(String, Vec<FeedShrink>)>> {
        let (Some(_), Some(_)) = (before, after) else {
            return Ok(Vec::new());
        };
        let overlays = layers.get(conn)?;
        let shrunk = if overlays.is_empty() {
            blast::shrunk_feeds(before, after)
        } else {
            let before = parse::<Cluster>(before).and_then(|c| served(&c, overlays));
            let after = parse::<Cluster>(after).and_then(|c| served(&c, overlays));
            blast::shrunk_feeds(before.as_ref(), after.as_ref())
        };
        Ok(vec![(id.to_owned(), shrunk)])
    }
}

impl Resource for PlatformComponent {
    const CHANGES_CLUSTER_ENTRIES: bool = false;
    const COLLECTION: &'static str = "platform_components";
    const FEEDS: &'static [Feed] = &[Feed::PlatformComponents];
    const KIND: &'static str = "platform component";
    type Update = PlatformComponentUpdate;

    fn id(&self) -> &str {
        &self.id
    }
    fn update_id(update: &PlatformComponentUpdate) -> Option<&str> {
        update.id.as_deref()
    }
    fn validate(&self) -> Result<()> {
        validate::component(self)
    }
    fn apply(self, update: PlatformComponentUpdate) -> Self {
        PlatformComponent::apply(self, update)
    }
    fn get(conn: &Connection, id: &str) -> Result<Option<Self>> {
        components::get(conn, id)
    }
    fn insert(conn: &Connection, value: &Self) -> Result<()> {
        components::insert(conn, value)
    }
    fn update(conn: &Connection, value: &Self) -> Result<()> {
        components::update(conn, value)
    }
    fn delete(conn: &Connection, id: &str) -> Result<Self> {
        components::delete(conn, id)
    }
    fn affected_clusters(conn: &Connection, id: &str) -> Result<Vec<String>> {
        // Overlays that only set values reach no cluster beyond those the component is
        // assigned to already.
        let mut clusters = clusters_using(conn, "cluster_components", "component_id", id)?;
        clusters.extend(overlays::clusters_assigned_through(
            conn,
            "overlay_components",
            "component_id",
            id,
        )?);
        clusters.sort();
        clusters.dedup();
        Ok(clusters)
    }
    /// A component under an active rollout is written by that rollout only.
    fn guard_write(conn: &Connection, id: &str, actor: &str) -> Result<()> {
        super::rollouts::guard::check_catalog_write(conn, id, actor)
    }
}

impl Resource for Namespace {
    const CHANGES_CLUSTER_ENTRIES: bool = false;
    const COLLECTION: &'static str = "namespaces";
    const FEEDS: &'static [Feed] = &[Feed::Namespaces];
    const KIND: &'static str = "namespace";
    type Update = NamespaceUpdate;

    fn id(&self) -> &str {
        &self.id
    }
    fn update_id(update: &NamespaceUpdate) -> Option<&str> {
        update.id.as_deref()
    }
    fn validate(&self) -> Result<()> {
        validate::namespace(self)
    }
    fn apply(self, update: NamespaceUpdate) -> Self {
        Namespace::apply(self, update)
    }
    fn get(conn: &Connection, id: &str) -> Result<Option<Self>> {
        namespaces::get(conn, id)
    }
    fn insert(conn: &Connection, value: &Self) -> Result<()> {
        namespaces::insert(conn, value)
    }
    fn update(conn: &Connection, value: &Self) -> Result<()> {
        namespaces::update(conn, value)
    }
    fn delete(conn: &Connection, id: &str) -> Result<Self> {
        namespaces::delete(conn, id)
    }
    fn affected_clusters(conn: &Connection, id: &str) -> Result<Vec<String>> {
        let mut clusters = clusters_using(conn, "cluster_namespaces", "namespace_id", id)?;
        clusters.extend(overlays::clusters_assigned_through(
            conn,
            "overlay_namespaces",
            "namespace_id",
            id,
        )?);
        clusters.sort();
        clusters.dedup();
        Ok(clusters)
    }
}

impl Resource for Rolebinding {
    const CHANGES_CLUSTER_ENTRIES: bool = false;
    const COLLECTION: &'static str = "rolebindings";
    const FEEDS: &'static [Feed] = &[Feed::Rolebindings];
    const KIND: &'static str = "rolebinding";
    type Update = RolebindingUpdate;

    fn id(&self) -> &str {
        &self.id
    }
    fn update_id(update: &RolebindingUpdate) -> Option<&str> {
        update.id.as_deref()
    }
    fn validate(&self) -> Result<()> {
        validate::rolebinding(self)
    }
    fn apply(self, update: RolebindingUpdate) -> Self {
        Rolebinding::apply(self, update)
    }
    fn get(conn: &Connection, id: &str) -> Result<Option<Self>> {
        rolebindings::get(conn, id)
    }
    fn insert(conn: &Connection, value: &Self) -> Result<()> {
        rolebindings::insert(conn, value)
    }
    fn update(conn: &Connection, value: &Self) -> Result<()> {
        rolebindings::update(conn, value)
    }
    fn delete(conn: &Connection, id: &str) -> Result<Self> {
        rolebindings::delete(conn, id)
    }
    fn affected_clusters(conn: &Connection, id: &str) -> Result<Vec<String>> {
        let mut clusters = clusters_using(conn, "cluster_rolebindings", "rolebinding_id", id)?;
        clusters.extend(overlays::clusters_assigned_through(
            conn,
            "overlay_rolebindings",
            "rolebinding_id",
            id,
        )?);
        clusters.sort();
        clusters.dedup();
        Ok(clusters)
    }
}

impl Resource for Overlay {
    const COLLECTION: &'static str = "overlays";
    const KIND: &'static str = "overlay";
    const FEEDS: &'static [Feed] = &Feed::ALL;
    type Update = OverlayUpdate;

    fn id(&self) -> &str {
        &self.id
    }
    fn update_id(update: &OverlayUpdate) -> Option<&str> {
        update.id.as_deref()
    }
    fn validate(&self) -> Result<()> {
        validate::overlay(self)
    }
    fn apply(self, update: OverlayUpdate) -> Self {
        Overlay::apply(self, update)
    }
    fn get(conn: &Connection, id: &str) -> Result<Option<Self>> {
        overlays::get(conn, id)
    }
    fn insert(conn: &Connection, value: &Self) -> Result<()> {
        overlays::insert(conn, value)
    }
    fn update(conn: &Connection, value: &Self) -> Result<()> {
        overlays::update(conn, value)
    }
    fn delete(conn: &Connection, id: &str) -> Result<Self> {
        overlays::delete(conn, id)
    }
    /// An edit of values alone (same selector, priority, namespaces and rolebindings) can
    /// change the platform-components feeds only; one of namespaces or rolebindings alone,
    /// not those.
    fn feeds_of(before: Option<&Value>, after: Option<&Value>) -> &'static [Feed] {
        let (Some(before), Some(after)) = (before, after) else {
            return &Feed::ALL;
        };
        let same = |fields: &[&str]| fields.iter().all(|f| before[*f] == after[*f]);
        if !same(&["selector", "priority"]) {
            return &Feed::ALL;
        }
        match (
            same(&["platform_components", "patches"]),
            same(&["namespaces", "rolebindings"]),
        ) {
            (false, true) => &[Feed::PlatformComponents],
            (true, false) => &[Feed::Namespaces, Feed::Rolebindings],
            // The description alone: no feed.
            (true, true) => &[],
            (false, false) => &Feed::ALL,
        }
    }
    /// An overlay an active rollout promotes into is written by that rollout only.
    fn guard_write(conn: &Connection, id: &str, actor: &str) -> Result<()> {
        super::rollouts::guard::check_overlay_write(conn, id, actor)
    }
    /// The clusters its selector matches now.
    fn affected_clusters(conn: &Connection, id: &str) -> Result<Vec<String>> {
        match overlays::get(conn, id)? {
            Some(overlay) => overlays::matching_clusters(conn, &overlay.selector),
            None => Ok(Vec::new()),
        }
    }
    /// And those its selector matched before the write.
    fn affected_before(conn: &Connection, before: &Value) -> Result<Vec<String>> {
        match parse::<Overlay>(Some(before)) {
            Some(overlay) => overlays::matching_clusters(conn, &overlay.selector),
            None => Ok(Vec::new()),
        }
    }
    /// Each cluster the overlay matched or matches, served with the overlays before the write
    /// and after it. Only a change of what the overlay assigns can take inputs away, so a
    /// value edit (a tag) costs nothing here however many clusters it reaches.
    fn shrinks(
        conn: &Connection,
        layers: &mut Layers,
        id: &str,
        before: Option<&Value>,
        after: Option<&Value>,
    ) -> Result<Vec<(String, Vec<FeedShrink>)>> {
        let (before, after) = (parse::<Overlay>(before), parse::<Overlay>(after));
        if !overlay::assignments_differ(before.as_ref(), after.as_ref()) {
            return Ok(Vec::new());
        }
        layers.invalidate();
        let now = layers.get(conn)?;
        let mut then: Vec<Overlay> = now.iter().filter(|o| o.id != id).cloned().collect();
        then.extend(before.iter().cloned());
        let mut reached = Vec::new();
        for overlay in before.iter().chain(after.iter()) {
            reached.extend(overlays::matching_clusters(conn, &overlay.selector)?);
        }
        reached.sort();
        reached.dedup();
        let mut shrinks = Vec::new();
        for cluster_id in reached {
            let Some(cluster) = clusters::get(conn, &cluster_id)? else {
                continue;
            };
            let shrunk = blast::shrunk_feeds(
                served(&cluster, &then).as_ref(),
                served(&cluster, now).as_ref(),
            );
            shrinks.push((cluster_id, shrunk));
        }
        Ok(shrinks)
    }
}

/// A window changes no feed; it decides when writes may change them.
impl Resource for Window {
    const COLLECTION: &'static str = "windows";
    const KIND: &'static str = "window";
    const FEEDS: &'static [Feed] = &[];
    type Update = WindowUpdate;

    fn id(&self) -> &str {
        &self.id
    }
    fn update_id(update: &WindowUpdate) -> Option<&str> {
        update.id.as_deref()
    }
    fn validate(&self) -> Result<()> {
        validate::window(self)
    }
    fn apply(self, update: WindowUpdate) -> Self {
        Window::apply(self, update)
    }
    fn get(conn: &Connection, id: &str) -> Result<Option<Self>> {
        windows::get(conn, id)
    }
    fn insert(conn: &Connection, value: &Self) -> Result<()> {
        windows::insert(conn, value)
    }
    fn update(conn: &Connection, value: &Self) -> Result<()> {
        windows::update(conn, value)
    }
    fn delete(conn: &Connection, id: &str) -> Result<Self> {
        windows::delete(conn, id)
    }
    fn affected_clusters(conn: &Connection, id: &str) -> Result<Vec<String>> {
        let _ = (conn, id);
        Ok(Vec::new())
    }
}
