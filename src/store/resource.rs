//! The four CRUD resources behind one interface, so create / get / update / delete are
//! written once (the write pipeline, `write.rs`) and every resource gets the same
//! transaction discipline; the hooks say what is particular to a resource (the feeds its
//! writes touch, what may refuse them, what they take away from Flux).

use rusqlite::Connection;
use serde_json::Value;

use super::{clusters, components, namespaces, rolebindings};
use crate::domain::blast::{self, FeedShrink};
use crate::domain::encode::Feed;
use crate::domain::model::{
    Cluster, ClusterUpdate, Namespace, NamespaceUpdate, PlatformComponent, PlatformComponentUpdate,
    Rolebinding, RolebindingUpdate,
};
use crate::domain::validate;
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
    /// Ids of the clusters whose feeds a write of this resource can change.
    fn affected_clusters(conn: &Connection, id: &str) -> Result<Vec<String>>;
    /// The feeds of those clusters a write of this resource can change.
    const FEEDS: &'static [Feed];
    /// Refuses a write (by `actor`) that the inventory's state forbids now.
    fn guard_write(conn: &Connection, id: &str, actor: &str) -> Result<()> {
        let _ = (conn, id, actor);
        Ok(())
    }
    /// What a write of this record from `before` to `after` takes away from Flux (the blast
    /// radius): only a cluster assigns inputs, so only its writes can.
    fn shrinks(before: Option<&Value>, after: Option<&Value>) -> Vec<FeedShrink> {
        let _ = (before, after);
        Vec::new()
    }
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
    fn shrinks(before: Option<&Value>, after: Option<&Value>) -> Vec<FeedShrink> {
        blast::shrunk_feeds(before, after)
    }
}

impl Resource for PlatformComponent {
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
        clusters_using(conn, "cluster_components", "component_id", id)
    }
    /// A component under an active rollout is written by that rollout only.
    fn guard_write(conn: &Connection, id: &str, actor: &str) -> Result<()> {
        super::rollouts::guard::check_catalog_write(conn, id, actor)
    }
}

impl Resource for Namespace {
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
        clusters_using(conn, "cluster_namespaces", "namespace_id", id)
    }
}

impl Resource for Rolebinding {
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
        clusters_using(conn, "cluster_rolebindings", "rolebinding_id", id)
    }
}
