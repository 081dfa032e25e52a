//! The read model Flux polls are answered from: the catalog and clusters in the encoder's
//! compact form (`domain::encode`), so a hit is a concatenation of byte slices — no SQL, no
//! JSON tree — while memory stays proportional to the inventory (an 11 KB feed costs a few
//! hundred bytes per cluster, not 11 KB).
//!
//! Consistency: everything cached belongs to one `inventory_revision`, which every
//! flux-inputs write transaction bumps. API writes drop the cache before they answer, so the
//! next read sees them. A cluster loaded at another revision than the cached catalog (another
//! flux-inputs process wrote meanwhile) is served straight from its own transaction and not
//! cached. Edits by other tools (a sqlite3 shell) are noticed by the server's background task,
//! which polls SQLite's `PRAGMA data_version` and calls `invalidate`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use poem_openapi::types::ToJSON;
use rusqlite::Connection;

use super::feeds::{self, Feed};
use super::{SqlResultExt, Store, clusters};
use crate::domain::encode::{Catalog, ClusterRefs, Fragments, LoadedCluster, json_text};
use crate::domain::merge;
use crate::domain::model::Environment;
use crate::error::{AppError, Result};

/// The cached clusters of a snapshot and the fragments they share, under one lock.
#[derive(Default)]
struct Entries {
    clusters: std::collections::HashMap<Box<str>, ClusterRefs>,
    fragments: Fragments,
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
                    catalog: feeds::load_catalog(conn)?,
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
