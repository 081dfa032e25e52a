//! The read model Flux polls are answered from: the catalog and clusters in the encoder's
//! compact form (`domain::encode`), so a hit is a concatenation of byte slices — no SQL, no
//! JSON tree — while memory stays proportional to the inventory (an 11 KB feed costs a few
//! hundred bytes per cluster, not 11 KB).
//!
//! Consistency: everything cached belongs to one `inventory_revision`, which every
//! flux-inputs write transaction bumps. Before an API write answers, the cache moves to the
//! new revision keeping every cluster whose feeds the write could not change, so the next
//! read sees the write and a fleet of pollers does not reload the whole inventory after it. A cluster loaded at another revision than the cached catalog (another
//! flux-inputs process wrote meanwhile) is served straight from its own transaction and not
//! cached. Edits by other tools (a sqlite3 shell) are noticed by the server's background task,
//! which polls SQLite's `PRAGMA data_version` and calls `invalidate`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use poem_openapi::types::ToJSON;

use super::feeds::{self, Feed};
use super::revision::revision;
use super::{Store, clusters};
use crate::domain::encode::{Catalog, ClusterRefs, Fragments, LoadedCluster, json_text};
use crate::domain::merge;
use crate::domain::model::Environment;
use crate::error::{AppError, Result};

/// The cached clusters of a snapshot and the fragments they share, under one lock.
#[derive(Default)]
struct Entries {
    /// Shared with the snapshots a write carries them over to: a write copies pointers, not
    /// 100,000 clusters.
    clusters: std::collections::HashMap<Arc<str>, Arc<ClusterRefs>>,
    fragments: Fragments,
}

/// The fleet list, pre-encoded entry by entry, ordered by id.
struct FleetList(Vec<(Environment, Box<[u8]>)>);

/// Every cluster's fleet-list entry, pre-encoded, in id order.
fn fleet_list(conn: &rusqlite::Connection) -> Result<FleetList> {
    let entries = clusters::map_headers(conn, |c| {
        let entry = merge::cluster_list_entry(&c).to_json().unwrap_or_default();
        (c.environment, json_text(&entry))
    })?;
    Ok(FleetList(entries))
}

/// A snapshot's clusters, for `FeedCache::kept_at`.
pub struct KeptClusters(Arc<Snapshot>);

impl KeptClusters {
    /// `f` on the cached form of the cluster served at `cluster_dns` and the fragments it
    /// refers to; `None` when it is not cached.
    pub fn with<T>(
        &self,
        cluster_dns: &str,
        f: impl FnOnce(&ClusterRefs, &Fragments) -> T,
    ) -> Option<T> {
        let entries = self
            .0
            .shard(cluster_dns)
            .read()
            .unwrap_or_else(|e| e.into_inner());
        let refs = entries.clusters.get(cluster_dns)?;
        Some(f(refs, &entries.fragments))
    }
}

/// Clusters of a snapshot, spread over shards by DNS name: concurrent polls of different
/// clusters take different locks.
const SHARDS: usize = 16;

/// Everything cached for one inventory revision.
struct Snapshot {
    revision: i64,
    /// Every cluster is in it (a replica's copy): a miss is a 404, never a database read.
    complete: bool,
    catalog: Catalog,
    shards: [RwLock<Entries>; SHARDS],
    fleet: RwLock<Option<Arc<FleetList>>>,
}

impl Snapshot {
    fn new(revision: i64, catalog: Catalog) -> Self {
        Snapshot {
            revision,
            complete: false,
            catalog,
            shards: std::array::from_fn(|_| RwLock::default()),
            fleet: RwLock::default(),
        }
    }

    fn shard(&self, cluster_dns: &str) -> &RwLock<Entries> {
        &self.shards[shard_of(cluster_dns)]
    }
}

fn shard_of(cluster_dns: &str) -> usize {
    use std::hash::BuildHasher;
    static HASHER: std::sync::OnceLock<std::hash::RandomState> = std::sync::OnceLock::new();
    HASHER
        .get_or_init(std::hash::RandomState::new)
        .hash_one(cluster_dns) as usize
        % SHARDS
}

/// Shared by every request; cheap to clone.
///
/// A poll that hits the cache takes no shared lock and bumps no shared counter: each worker
/// thread keeps its own handle on the current snapshot, refreshed when `generation` moves.
#[derive(Clone)]
pub struct FeedCache {
    /// Unique in the process: names this cache in the threads' handles.
    id: usize,
    current: Arc<RwLock<Option<Arc<Snapshot>>>>,
    /// Bumped after every change of `current`.
    generation: Arc<AtomicU64>,
    loading: Arc<tokio::sync::Mutex<()>>,
    stats: Arc<CacheStats>,
}

impl Default for FeedCache {
    fn default() -> Self {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        FeedCache {
            id: NEXT.fetch_add(1, Ordering::Relaxed),
            current: Arc::default(),
            generation: Arc::default(),
            loading: Arc::default(),
            stats: Arc::default(),
        }
    }
}

thread_local! {
    /// This thread's handle: (cache id, generation, snapshot).
    static LOCAL: std::cell::RefCell<Option<(usize, u64, Arc<Snapshot>)>> =
        const { std::cell::RefCell::new(None) };
}

/// A counter alone on its cache line, so threads counting in different ones never contend.
#[derive(Default, Debug)]
#[repr(align(64))]
struct Padded(AtomicU64);

/// Counters since start.
#[derive(Default, Debug)]
pub struct CacheStats {
    /// Feeds answered from a cached cluster, counted per shard.
    hits: [Padded; SHARDS],
    /// Feeds whose cluster had to be loaded.
    pub misses: AtomicU64,
    /// Loads that found the inventory changed under the cache (the cache was dropped).
    pub stale: AtomicU64,
}

impl CacheStats {
    /// Feeds answered from a cached cluster.
    pub fn hits(&self) -> u64 {
        self.hits.iter().map(|h| h.0.load(Ordering::Relaxed)).sum()
    }

    fn hit(&self, shard: usize) {
        self.hits[shard].0.fetch_add(1, Ordering::Relaxed);
    }
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
        self.set(None);
    }

    /// After a committed write at `revision` (the one after the cached snapshot's): the new
    /// snapshot keeps every cached cluster but those served at `changed` DNS names (before
    /// and after the write), and the fleet list unless `fleet_changed`. Anything else (the
    /// cache was behind, the catalog gained or lost ids) drops everything.
    pub fn carry_over(
        &self,
        revision: i64,
        catalog: Catalog,
        changed: &std::collections::HashSet<String>,
        fleet_changed: bool,
    ) {
        let mut current = self.current.write().unwrap_or_else(|e| e.into_inner());
        let next = match current.as_deref() {
            Some(old)
                if !old.complete
                    && old.revision + 1 == revision
                    && old.catalog.same_layout(&catalog) =>
            {
                let next = Snapshot::new(revision, catalog);
                for (from, to) in old.shards.iter().zip(&next.shards) {
                    let from = from.read().unwrap_or_else(|e| e.into_inner());
                    let mut to = to.write().unwrap_or_else(|e| e.into_inner());
                    to.fragments = from.fragments.clone();
                    to.clusters = from
                        .clusters
                        .iter()
                        .filter(|(dns, _)| !changed.contains(&***dns))
                        .map(|(dns, entry)| (dns.clone(), entry.clone()))
                        .collect();
                }
                if !fleet_changed {
                    *next.fleet.write().unwrap_or_else(|e| e.into_inner()) = self.cached_fleet(old);
                }
                Some(Arc::new(next))
            }
            _ => None,
        };
        *current = next;
        drop(current);
        self.generation.fetch_add(1, Ordering::Release);
    }

    /// Replaces the current snapshot and moves the generation on.
    fn set(&self, snapshot: Option<Arc<Snapshot>>) {
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = snapshot;
        self.generation.fetch_add(1, Ordering::Release);
    }

    /// A hit answered from this thread's handle, or `None` (a miss, or no snapshot yet).
    fn try_hit(&self, cluster_dns: &str, feed: Feed) -> Option<Vec<u8>> {
        self.with_cached(cluster_dns, |snapshot, entries, entry| {
            self.stats.hit(shard_of(cluster_dns));
            entry.encode(&snapshot.catalog, &entries.fragments, feed)
        })
    }

    /// Whether the cluster with this DNS name is cached now (a known cluster, then).
    pub fn is_cached(&self, cluster_dns: &str) -> bool {
        self.with_cached(cluster_dns, |_, _, _| ()).is_some()
    }

    /// `f` on the cached entry of the cluster, through this thread's handle on the snapshot.
    fn with_cached<T>(
        &self,
        cluster_dns: &str,
        f: impl FnOnce(&Snapshot, &Entries, &ClusterRefs) -> T,
    ) -> Option<T> {
        let generation = self.generation.load(Ordering::Acquire);
        LOCAL.with_borrow_mut(|local| {
            let fresh =
                matches!(local, Some((id, seen, _)) if *id == self.id && *seen == generation);
            if !fresh {
                *local = Some((self.id, generation, self.snapshot()?));
            }
            let (_, _, snapshot) = local.as_ref()?;
            let entries = snapshot
                .shard(cluster_dns)
                .read()
                .unwrap_or_else(|e| e.into_inner());
            let entry = entries.clusters.get(cluster_dns)?;
            Some(f(snapshot, &entries, entry))
        })
    }

    /// The cached clusters as they are at inventory `revision`, encodable against `catalog`
    /// (same ids in the same order), if the snapshot is exactly there: a write's checks read
    /// the clusters it did not change from here instead of from the database.
    pub fn kept_at(&self, revision: i64, catalog: &Catalog) -> Option<KeptClusters> {
        self.snapshot()
            .filter(|s| s.revision == revision && s.catalog.same_layout(catalog))
            .map(KeptClusters)
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
            drop(current);
            self.generation.fetch_add(1, Ordering::Release);
        }
    }

    async fn current_snapshot(&self, store: &Store) -> Result<Arc<Snapshot>> {
        if let Some(snapshot) = self.snapshot() {
            return Ok(snapshot);
        }
        if store.is_replica() {
            return Err(AppError::Unavailable(
                "this replica has not loaded a consistent copy of the inventory yet".into(),
            ));
        }
        // One loader at a time; the others wait and reuse its result.
        let _guard = self.loading.lock().await;
        if let Some(snapshot) = self.snapshot() {
            return Ok(snapshot);
        }
        let snapshot = store
            .read(|conn| {
                Ok(Arc::new(Snapshot::new(
                    revision(conn)?,
                    feeds::load_catalog(conn)?,
                )))
            })
            .await?;
        self.set(Some(snapshot.clone()));
        Ok(snapshot)
    }

    /// One feed of the cluster with this DNS name, encoded exactly as `feeds::build` would.
    pub async fn feed(&self, store: &Store, cluster_dns: &str, feed: Feed) -> Result<Vec<u8>> {
        if let Some(body) = self.try_hit(cluster_dns, feed) {
            return Ok(body);
        }
        let snapshot = self.current_snapshot(store).await?;
        {
            let entries = snapshot
                .shard(cluster_dns)
                .read()
                .unwrap_or_else(|e| e.into_inner());
            if let Some(entry) = entries.clusters.get(cluster_dns) {
                self.stats.hit(shard_of(cluster_dns));
                return Ok(entry.encode(&snapshot.catalog, &entries.fragments, feed));
            }
        }
        if snapshot.complete {
            return Err(AppError::NotFound(format!(
                "no cluster with cluster_dns '{cluster_dns}'"
            )));
        }
        self.stats.misses.fetch_add(1, Ordering::Relaxed);
        let dns = cluster_dns.to_owned();
        let loader = snapshot.clone();
        let loaded = store
            .read(move |conn| {
                let not_found =
                    || AppError::NotFound(format!("no cluster with cluster_dns '{dns}'"));
                let current = revision(conn)? == loader.revision;
                match clusters::load_encodable(conn, &loader.catalog, &dns) {
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
                let mut entries = snapshot
                    .shard(cluster_dns)
                    .write()
                    .unwrap_or_else(|e| e.into_inner());
                let entry = cluster.intern(&mut entries.fragments);
                let body = entry.encode(&snapshot.catalog, &entries.fragments, feed);
                entries.clusters.insert(cluster_dns.into(), Arc::new(entry));
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
            .read(|conn| Ok((revision(conn)?, Arc::new(fleet_list(conn)?))))
            .await?;
        if revision_read == snapshot.revision {
            *snapshot.fleet.write().unwrap_or_else(|e| e.into_inner()) = Some(list.clone());
        } else {
            self.retire(snapshot);
        }
        Ok(list)
    }

    /// Replaces the cache with every cluster of the inventory `conn` reads (a replica's copy,
    /// loaded in one read transaction); returns the number of clusters.
    pub fn load_complete(&self, conn: &rusqlite::Connection) -> Result<usize> {
        let mut snapshot = Snapshot::new(revision(conn)?, feeds::load_catalog(conn)?);
        snapshot.complete = true;
        let all = clusters::ids_and_dns(conn, None)?;
        for (_, dns) in &all {
            if let Some(cluster) = clusters::load_encodable(conn, &snapshot.catalog, dns)? {
                let mut entries = snapshot
                    .shard(dns)
                    .write()
                    .unwrap_or_else(|e| e.into_inner());
                let entry = cluster.intern(&mut entries.fragments);
                entries
                    .clusters
                    .insert(dns.as_str().into(), Arc::new(entry));
            }
        }
        *snapshot.fleet.write().unwrap_or_else(|e| e.into_inner()) =
            Some(Arc::new(fleet_list(conn)?));
        self.set(Some(Arc::new(snapshot)));
        Ok(all.len())
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
