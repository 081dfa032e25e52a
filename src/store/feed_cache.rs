//! The read model Flux polls are answered from: the catalog pre-encoded into JSON fragments
//! once, and each cluster kept as a compact list of references into it. A feed is then a
//! concatenation of byte slices — no SQL, no JSON tree — while memory stays proportional to
//! the inventory (an 11 KB feed costs a few hundred bytes per cluster, not 11 KB).
//!
//! Consistency: everything cached belongs to one `inventory_revision`, which every
//! flux-inputs write transaction bumps. API writes drop the cache before they answer, so the
//! next read sees them. A cluster loaded at another revision than the cached catalog (another
//! flux-inputs process wrote meanwhile) is served straight from its own transaction and not
//! cached. Edits by other tools (a sqlite3 shell) are noticed by the server's background task,
//! which polls SQLite's `PRAGMA data_version` and calls `invalidate`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use poem_openapi::types::ToJSON;
use rusqlite::{Connection, OptionalExtension};
use serde::Serialize;

use super::feeds::{self, Feed};
use super::{SqlResultExt, Store, clusters};
use crate::domain::merge;
use crate::domain::model::{Environment, Namespace, PlatformComponent, Rolebinding};
use crate::error::{AppError, Result};

/// JSON text of a serializable value (a string, a map): escaping exactly as serde_json does.
fn json_text<T: Serialize + ?Sized>(value: &T) -> Box<[u8]> {
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

/// The catalog at one revision, pre-encoded.
struct Catalog {
    components: Vec<ComponentFragments>,
    component_index: HashMap<String, u32>,
    namespaces: Vec<Box<[u8]>>,
    namespace_index: HashMap<String, u32>,
    rolebindings: Vec<Box<[u8]>>,
    rolebinding_index: HashMap<String, u32>,
}

impl Catalog {
    fn load(conn: &Connection) -> Result<Catalog> {
        let components = super::components::list(conn, None, Default::default())?;
        let namespaces = super::namespaces::list(conn, Default::default())?;
        let rolebindings = super::rolebindings::list(conn, Default::default())?;
        let index = |ids: Vec<&String>| {
            ids.into_iter()
                .enumerate()
                .map(|(i, id)| (id.clone(), i as u32))
                .collect()
        };
        Ok(Catalog {
            component_index: index(components.iter().map(|c| &c.id).collect()),
            components: components.iter().map(ComponentFragments::new).collect(),
            namespace_index: index(namespaces.iter().map(|n| &n.id).collect()),
            namespaces: namespaces.iter().map(namespace_head).collect(),
            rolebinding_index: index(rolebindings.iter().map(|r| &r.id).collect()),
            rolebindings: rolebindings.iter().map(rolebinding_head).collect(),
        })
    }
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

/// "No override": the catalog value applies.
const NONE: u32 = u32::MAX;

/// A cluster's reference to a catalog component. Overrides are ids into the snapshot's
/// interned fragments (fleets repeat the same tags and patches on many clusters).
struct ComponentRef {
    component: u32,
    enabled: bool,
    path: u32,
    tag: u32,
    patch: u32,
}

/// One cluster as references into the catalog.
struct ClusterEntry {
    /// `{"name":…,"dns":…,"environment":…}`
    info: Box<[u8]>,
    components: Box<[ComponentRef]>,
    namespaces: Box<[u32]>,
    rolebindings: Box<[u32]>,
}

/// Override texts shared by every cluster of a snapshot.
#[derive(Default)]
struct Fragments {
    texts: Vec<Arc<[u8]>>,
    ids: HashMap<Arc<[u8]>, u32>,
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

    fn get<'a>(&'a self, id: u32, default: &'a [u8]) -> &'a [u8] {
        if id == NONE {
            default
        } else {
            &self.texts[id as usize]
        }
    }
}

/// The cached clusters of a snapshot and the fragments they share, under one lock.
#[derive(Default)]
struct Entries {
    clusters: HashMap<Box<str>, ClusterEntry>,
    fragments: Fragments,
}

/// A component reference as read, with its override texts.
struct LoadedRef {
    component: u32,
    enabled: bool,
    path: Option<Box<[u8]>>,
    tag: Option<Box<[u8]>>,
    patch: Option<Box<[u8]>>,
}

/// A cluster as read from the database, before its fragments are interned.
struct LoadedCluster {
    info: Box<[u8]>,
    components: Vec<LoadedRef>,
    namespaces: Box<[u32]>,
    rolebindings: Box<[u32]>,
}

impl LoadedCluster {
    /// Reads the cluster with this DNS name straight into catalog indices and JSON texts.
    /// `None` if it does not exist; an error if it names something the catalog lacks.
    fn read(
        conn: &Connection,
        catalog: &Catalog,
        cluster_dns: &str,
    ) -> Result<Option<LoadedCluster>> {
        let header = conn
            .prepare_cached(
                "SELECT id, cluster_name, environment FROM clusters WHERE cluster_dns = ?1",
            )
            .db()?
            .query_row([cluster_dns], |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, String>(2)?,
                ))
            })
            .optional()
            .db()?;
        let Some((id, name, environment)) = header else {
            return Ok(None);
        };
        let missing = |kind: &str, what: &str| {
            AppError::Internal(format!("cluster '{id}' references unknown {kind} '{what}'"))
        };
        let info =
            serde_json::json!({"name": name, "dns": cluster_dns, "environment": environment});
        let mut stmt = conn
            .prepare_cached(
                "SELECT cc.component_id, cc.enabled, cc.component_path, cc.oci_tag, cp.patch \
                 FROM cluster_components cc LEFT JOIN cluster_patches cp \
                 ON cp.cluster_id = cc.cluster_id AND cp.component_id = cc.component_id \
                 WHERE cc.cluster_id = ?1 ORDER BY cc.position",
            )
            .db()?;
        let mut rows = stmt.query([&id]).db()?;
        let mut components = Vec::new();
        while let Some(row) = rows.next().db()? {
            let component: String = row.get(0).db()?;
            let index = *catalog
                .component_index
                .get(&component)
                .ok_or_else(|| missing("component", &component))?;
            let path: Option<String> = row.get(2).db()?;
            let tag: Option<String> = row.get(3).db()?;
            // Patches are stored as the compact JSON the API encodes; served as stored.
            let patch: Option<String> = row.get(4).db()?;
            components.push(LoadedRef {
                component: index,
                enabled: row.get(1).db()?,
                path: path.as_deref().map(json_text),
                tag: tag.as_deref().map(json_text),
                patch: patch.map(|p| p.into_bytes().into_boxed_slice()),
            });
        }
        let indices = |sql: &str, index: &HashMap<String, u32>, kind: &str| -> Result<Box<[u32]>> {
            super::query_ids(conn, sql, &id)?
                .iter()
                .map(|name| index.get(name).copied().ok_or_else(|| missing(kind, name)))
                .collect()
        };
        Ok(Some(LoadedCluster {
            info: json_text(&info),
            components,
            namespaces: indices(
                "SELECT namespace_id FROM cluster_namespaces WHERE cluster_id = ?1 ORDER BY position",
                &catalog.namespace_index,
                "namespace",
            )?,
            rolebindings: indices(
                "SELECT rolebinding_id FROM cluster_rolebindings WHERE cluster_id = ?1 ORDER BY position",
                &catalog.rolebinding_index,
                "rolebinding",
            )?,
        }))
    }

    fn intern(self, fragments: &mut Fragments) -> ClusterEntry {
        ClusterEntry {
            info: self.info,
            components: self
                .components
                .into_iter()
                .map(|r| ComponentRef {
                    component: r.component,
                    enabled: r.enabled,
                    path: fragments.intern(r.path),
                    tag: fragments.intern(r.tag),
                    patch: fragments.intern(r.patch),
                })
                .collect(),
            namespaces: self.namespaces,
            rolebindings: self.rolebindings,
        }
    }
}

impl ClusterEntry {
    fn encode(&self, catalog: &Catalog, fragments: &Fragments, feed: Feed) -> Vec<u8> {
        let mut out = Vec::with_capacity(64 + self.components.len() * 420);
        out.extend_from_slice(br#"{"inputs":["#);
        match feed {
            Feed::PlatformComponents => {
                for (i, r) in self.components.iter().enumerate() {
                    let c = &catalog.components[r.component as usize];
                    if i > 0 {
                        out.push(b',');
                    }
                    out.extend_from_slice(&c.head);
                    out.extend_from_slice(fragments.get(r.path, &c.path));
                    out.extend_from_slice(&c.middle);
                    out.extend_from_slice(if r.enabled { b"true" } else { b"false" });
                    out.extend_from_slice(br#","patches":"#);
                    out.extend_from_slice(fragments.get(r.patch, b"{}"));
                    out.extend_from_slice(br#","cluster":"#);
                    out.extend_from_slice(&self.info);
                    out.extend_from_slice(&c.source);
                    out.extend_from_slice(fragments.get(r.tag, &c.tag));
                    out.extend_from_slice(b"}}");
                }
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
            }
        }
        out.extend_from_slice(b"]}");
        out
    }
}

/// The fleet list, pre-encoded entry by entry, ordered by id.
struct FleetList(Vec<(Environment, Box<[u8]>)>);

/// Everything cached for one inventory revision.
struct Snapshot {
    revision: i64,
    catalog: Catalog,
    entries: RwLock<Entries>,
    fleet: RwLock<Option<Arc<FleetList>>>,
}

/// Marks the inventory as changed; part of every write transaction.
pub fn bump_revision(conn: &Connection) -> Result<()> {
    conn.prepare_cached("UPDATE inventory_revision SET revision = revision + 1 WHERE id = 1")
        .db()?
        .execute([])
        .db()?;
    Ok(())
}

pub fn revision(conn: &Connection) -> Result<i64> {
    conn.prepare_cached("SELECT revision FROM inventory_revision WHERE id = 1")
        .db()?
        .query_row([], |row| row.get(0))
        .db()
}

/// Shared by every request; cheap to clone.
#[derive(Clone, Default)]
pub struct FeedCache {
    current: Arc<RwLock<Option<Arc<Snapshot>>>>,
    loading: Arc<tokio::sync::Mutex<()>>,
    stats: Arc<CacheStats>,
}

/// Counters since start.
#[derive(Default, Debug)]
pub struct CacheStats {
    /// Feeds answered from a cached cluster.
    pub hits: AtomicU64,
    /// Feeds whose cluster had to be loaded.
    pub misses: AtomicU64,
    /// Loads that found the inventory changed under the cache (the cache was dropped).
    pub stale: AtomicU64,
}

/// The answer of a cluster lookup that missed the cache.
enum Loaded {
    /// Read at the snapshot's revision: cache it.
    Entry(LoadedCluster),
    /// The inventory moved on: the feed, encoded from one consistent read.
    Fresh(Vec<u8>),
}

impl FeedCache {
    /// Drops everything cached; the next read rebuilds from the database.
    pub fn invalidate(&self) {
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = None;
    }

    pub fn stats(&self) -> &CacheStats {
        &self.stats
    }

    fn snapshot(&self) -> Option<Arc<Snapshot>> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Drops `stale` if it is still the current snapshot.
    fn retire(&self, stale: &Arc<Snapshot>) {
        let mut current = self.current.write().unwrap_or_else(|e| e.into_inner());
        if current.as_ref().is_some_and(|c| Arc::ptr_eq(c, stale)) {
            *current = None;
        }
    }

    async fn current_snapshot(&self, store: &Store) -> Result<Arc<Snapshot>> {
        if let Some(snapshot) = self.snapshot() {
            return Ok(snapshot);
        }
        // One loader at a time; the others wait and reuse its result.
        let _guard = self.loading.lock().await;
        if let Some(snapshot) = self.snapshot() {
            return Ok(snapshot);
        }
        let snapshot = store
            .read(|conn| {
                Ok(Arc::new(Snapshot {
                    revision: revision(conn)?,
                    catalog: Catalog::load(conn)?,
                    entries: RwLock::default(),
                    fleet: RwLock::default(),
                }))
            })
            .await?;
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Some(snapshot.clone());
        Ok(snapshot)
    }

    /// One feed of the cluster with this DNS name, encoded exactly as `feeds::build` would.
    pub async fn feed(&self, store: &Store, cluster_dns: &str, feed: Feed) -> Result<Vec<u8>> {
        let snapshot = self.current_snapshot(store).await?;
        {
            let entries = snapshot.entries.read().unwrap_or_else(|e| e.into_inner());
            if let Some(entry) = entries.clusters.get(cluster_dns) {
                self.stats.hits.fetch_add(1, Ordering::Relaxed);
                return Ok(entry.encode(&snapshot.catalog, &entries.fragments, feed));
            }
        }
        self.stats.misses.fetch_add(1, Ordering::Relaxed);
        let dns = cluster_dns.to_owned();
        let loader = snapshot.clone();
        let loaded = store
            .read(move |conn| {
                let not_found =
                    || AppError::NotFound(format!("no cluster with cluster_dns '{dns}'"));
                let current = revision(conn)? == loader.revision;
                match LoadedCluster::read(conn, &loader.catalog, &dns) {
                    Ok(Some(cluster)) if current => Ok(Loaded::Entry(cluster)),
                    Ok(None) => Err(not_found()),
                    // The catalog moved on (or was edited behind our back): answer from this
                    // transaction alone.
                    _ => {
                        let cluster = clusters::get_by_dns(conn, &dns)?.ok_or_else(not_found)?;
                        Ok(Loaded::Fresh(feeds::build(conn, &cluster, feed)?.body))
                    }
                }
            })
            .await?;
        match loaded {
            Loaded::Entry(cluster) => {
                let mut entries = snapshot.entries.write().unwrap_or_else(|e| e.into_inner());
                let entry = cluster.intern(&mut entries.fragments);
                let body = entry.encode(&snapshot.catalog, &entries.fragments, feed);
                entries.clusters.insert(cluster_dns.into(), entry);
                Ok(body)
            }
            Loaded::Fresh(body) => {
                self.stats.stale.fetch_add(1, Ordering::Relaxed);
                self.retire(&snapshot);
                Ok(body)
            }
        }
    }

    fn cached_fleet(&self, snapshot: &Snapshot) -> Option<Arc<FleetList>> {
        snapshot
            .fleet
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    async fn load_fleet(&self, store: &Store, snapshot: &Arc<Snapshot>) -> Result<Arc<FleetList>> {
        let (revision_read, list) = store
            .read(|conn| {
                let entries = clusters::list_headers(conn, &Default::default())?
                    .iter()
                    .map(|c| {
                        (
                            c.environment,
                            json_text(&merge::cluster_list_entry(c).to_json().unwrap_or_default()),
                        )
                    })
                    .collect();
                Ok((revision(conn)?, Arc::new(FleetList(entries))))
            })
            .await?;
        if revision_read == snapshot.revision {
            *snapshot.fleet.write().unwrap_or_else(|e| e.into_inner()) = Some(list.clone());
        } else {
            self.retire(snapshot);
        }
        Ok(list)
    }

    /// The fleet list (optionally one environment), paged, encoded as `{"inputs": [...]}`.
    pub async fn fleet(
        &self,
        store: &Store,
        environment: Option<Environment>,
        page: super::Page,
    ) -> Result<(usize, Vec<u8>)> {
        let snapshot = self.current_snapshot(store).await?;
        let list = match self.cached_fleet(&snapshot) {
            Some(list) => list,
            None => {
                // One loader at a time: a burst of list requests must not load it 64 times.
                let _guard = self.loading.lock().await;
                match self.cached_fleet(&snapshot) {
                    Some(list) => list,
                    None => self.load_fleet(store, &snapshot).await?,
                }
            }
        };
        let selected = list
            .0
            .iter()
            .filter(|(env, _)| environment.is_none_or(|wanted| *env == wanted))
            .skip(page.offset.unwrap_or(0) as usize)
            .take(page.limit.map_or(usize::MAX, |l| l as usize));
        let mut count = 0;
        let mut out = br#"{"inputs":["#.to_vec();
        for (_, entry) in selected {
            if count > 0 {
                out.push(b',');
            }
            out.extend_from_slice(entry);
            count += 1;
        }
        out.extend_from_slice(b"]}");
        Ok((count, out))
    }
}
