//! The read model Flux polls are answered from: the catalog pre-encoded into JSON fragments
//! once, and each cluster kept as a compact list of references into it. A feed is then a
//! concatenation of byte slices — no SQL, no JSON tree — while memory stays proportional to
//! the inventory (an 11 KB feed costs a few hundred bytes per cluster, not 11 KB).
//!
//! Consistency: everything cached belongs to one `inventory_revision`, which every
//! flux-inputs write transaction bumps. API writes drop the cache before they answer, so the
//! next read sees them. A cluster loaded at another revision than the cached catalog (another
//! flux-inputs process wrote meanwhile) is served straight from its own transaction and not
//! cached. Edits by other tools (a sqlite3 shell) are noticed by `watch_data_version`, which
//! polls SQLite's `PRAGMA data_version`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use poem_openapi::types::ToJSON;
use rusqlite::Connection;
use serde::Serialize;

use super::feeds::{self, Feed};
use super::{SqlResultExt, Store, clusters};
use crate::domain::merge;
use crate::domain::model::{Cluster, Environment, Namespace, PlatformComponent, Rolebinding};
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

/// What a cluster reference adds to its catalog entry; boxed because most have none.
struct Overrides {
    path: Option<Box<[u8]>>,
    tag: Option<Box<[u8]>>,
    patch: Option<Box<[u8]>>,
}

struct ComponentRef {
    component: u32,
    enabled: bool,
    overrides: Option<Box<Overrides>>,
}

/// One cluster as references into the catalog.
struct ClusterEntry {
    /// `{"name":…,"dns":…,"environment":…}`
    info: Box<[u8]>,
    components: Box<[ComponentRef]>,
    namespaces: Box<[u32]>,
    rolebindings: Box<[u32]>,
}

impl ClusterEntry {
    fn new(catalog: &Catalog, cluster: &Cluster) -> Result<ClusterEntry> {
        let missing = |kind: &str, id: &str| {
            AppError::Internal(format!(
                "cluster '{}' references unknown {kind} '{id}'",
                cluster.id
            ))
        };
        let components = cluster
            .platform_components
            .iter()
            .map(|r| {
                let component = *catalog
                    .component_index
                    .get(&r.id)
                    .ok_or_else(|| missing("component", &r.id))?;
                let patch = cluster.patches.get(&r.id);
                let overrides = (r.component_path.is_some()
                    || r.oci_tag.is_some()
                    || patch.is_some())
                .then(|| {
                    Box::new(Overrides {
                        path: r.component_path.as_deref().map(json_text),
                        tag: r.oci_tag.as_deref().map(json_text),
                        patch: patch.map(json_text),
                    })
                });
                Ok(ComponentRef {
                    component,
                    enabled: r.enabled,
                    overrides,
                })
            })
            .collect::<Result<_>>()?;
        let lookup = |index: &HashMap<String, u32>, kind: &str, id: &str| {
            index.get(id).copied().ok_or_else(|| missing(kind, id))
        };
        Ok(ClusterEntry {
            info: json_text(&merge::cluster_info(cluster).to_json().unwrap_or_default()),
            components,
            namespaces: cluster
                .namespaces
                .iter()
                .map(|r| lookup(&catalog.namespace_index, "namespace", &r.id))
                .collect::<Result<_>>()?,
            rolebindings: cluster
                .rolebindings
                .iter()
                .map(|r| lookup(&catalog.rolebinding_index, "rolebinding", &r.id))
                .collect::<Result<_>>()?,
        })
    }

    fn encode(&self, catalog: &Catalog, feed: Feed) -> Vec<u8> {
        let mut out = Vec::with_capacity(64 + self.components.len() * 420);
        out.extend_from_slice(br#"{"inputs":["#);
        match feed {
            Feed::PlatformComponents => {
                for (i, r) in self.components.iter().enumerate() {
                    let c = &catalog.components[r.component as usize];
                    let o = r.overrides.as_deref();
                    if i > 0 {
                        out.push(b',');
                    }
                    out.extend_from_slice(&c.head);
                    out.extend_from_slice(o.and_then(|o| o.path.as_deref()).unwrap_or(&c.path));
                    out.extend_from_slice(&c.middle);
                    out.extend_from_slice(if r.enabled { b"true" } else { b"false" });
                    out.extend_from_slice(br#","patches":"#);
                    out.extend_from_slice(o.and_then(|o| o.patch.as_deref()).unwrap_or(b"{}"));
                    out.extend_from_slice(br#","cluster":"#);
                    out.extend_from_slice(&self.info);
                    out.extend_from_slice(&c.source);
                    out.extend_from_slice(o.and_then(|o| o.tag.as_deref()).unwrap_or(&c.tag));
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
    clusters: RwLock<HashMap<Box<str>, Arc<ClusterEntry>>>,
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
    /// Built at the snapshot's revision: cache it.
    Entry(Arc<ClusterEntry>),
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
                    clusters: RwLock::default(),
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
        let cached = snapshot
            .clusters
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(cluster_dns)
            .cloned();
        if let Some(entry) = cached {
            self.stats.hits.fetch_add(1, Ordering::Relaxed);
            return Ok(entry.encode(&snapshot.catalog, feed));
        }
        self.stats.misses.fetch_add(1, Ordering::Relaxed);
        let dns = cluster_dns.to_owned();
        let loader = snapshot.clone();
        let loaded = store
            .read(move |conn| {
                let cluster = clusters::get_by_dns(conn, &dns)?.ok_or_else(|| {
                    AppError::NotFound(format!("no cluster with cluster_dns '{dns}'"))
                })?;
                let current = revision(conn)? == loader.revision;
                match ClusterEntry::new(&loader.catalog, &cluster) {
                    Ok(entry) if current => Ok(Loaded::Entry(Arc::new(entry))),
                    // The catalog moved on (or was edited behind our back): answer from this
                    // transaction alone.
                    _ => Ok(Loaded::Fresh(feeds::build(conn, &cluster, feed)?.body)),
                }
            })
            .await?;
        match loaded {
            Loaded::Entry(entry) => {
                let body = entry.encode(&snapshot.catalog, feed);
                snapshot
                    .clusters
                    .write()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(cluster_dns.into(), entry);
                Ok(body)
            }
            Loaded::Fresh(body) => {
                self.stats.stale.fetch_add(1, Ordering::Relaxed);
                self.retire(&snapshot);
                Ok(body)
            }
        }
    }

    /// The fleet list (optionally one environment), paged, encoded as `{"inputs": [...]}`.
    pub async fn fleet(
        &self,
        store: &Store,
        environment: Option<Environment>,
        page: super::Page,
    ) -> Result<(usize, Vec<u8>)> {
        let snapshot = self.current_snapshot(store).await?;
        let cached = snapshot
            .fleet
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let list = match cached {
            Some(list) => list,
            None => {
                let expected = snapshot.revision;
                let loaded = store
                    .read(move |conn| {
                        let entries = clusters::list_headers(conn, &Default::default())?
                            .iter()
                            .map(|c| {
                                (
                                    c.environment,
                                    json_text(
                                        &merge::cluster_list_entry(c).to_json().unwrap_or_default(),
                                    ),
                                )
                            })
                            .collect();
                        Ok((revision(conn)?, Arc::new(FleetList(entries))))
                    })
                    .await?;
                if loaded.0 != expected {
                    self.retire(&snapshot);
                } else {
                    *snapshot.fleet.write().unwrap_or_else(|e| e.into_inner()) =
                        Some(loaded.1.clone());
                }
                loaded.1
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

    /// Drops the cache whenever any other connection or process commits to the database,
    /// polling every `period` on a connection of its own (`PRAGMA data_version` changes only
    /// for commits made elsewhere). Runs until the task is aborted.
    pub async fn watch_data_version(&self, store: Store, period: std::time::Duration) {
        let mut ticker = tokio::time::interval(period);
        let mut watcher: Option<(Connection, i64)> = None;
        loop {
            ticker.tick().await;
            let path = store.path().to_owned();
            let previous = watcher.take();
            let polled = tokio::task::spawn_blocking(move || -> Result<(Connection, i64, bool)> {
                let (conn, last) = match previous {
                    Some((conn, last)) => (conn, Some(last)),
                    None => (Connection::open(&path).db()?, None),
                };
                let version: i64 = conn
                    .query_row("PRAGMA data_version", [], |row| row.get(0))
                    .db()?;
                Ok((conn, version, last.is_some_and(|last| last != version)))
            })
            .await;
            match polled {
                Ok(Ok((conn, version, changed))) => {
                    if changed {
                        self.invalidate();
                    }
                    watcher = Some((conn, version));
                }
                Ok(Err(err)) => {
                    tracing::warn!(error = %err, "cannot poll the database for outside changes")
                }
                Err(err) => tracing::warn!(error = %err, "the database poll failed"),
            }
        }
    }
}
