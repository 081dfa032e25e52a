//! Poll liveness: per cluster and feed, when Flux last fetched it and which client did.
//!
//! Polls are recorded in memory (a map update, no I/O) and flushed to `cluster_polls` in
//! batches by the server's background task, so a fleet polling every 30 s costs no writes
//! per poll. After a restart the last flushed state is loaded back.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, params};

use super::feeds::Feed;
use super::sql::SqlResultExt;
use crate::error::Result;

#[derive(Clone, Debug, PartialEq)]
pub struct Poll {
    /// Unix seconds.
    pub at: u64,
    pub user_agent: Arc<str>,
}

/// The three feeds of one cluster, and which changed since the last flush.
#[derive(Default)]
struct ClusterPolls {
    polls: [Option<Poll>; 3],
    dirty: [bool; 3],
}

fn slot(feed: Feed) -> usize {
    match feed {
        Feed::PlatformComponents => 0,
        Feed::Namespaces => 1,
        Feed::Rolebindings => 2,
    }
}

/// Polls by cluster, split over shards so concurrent polls of different clusters rarely
/// meet at a lock.
type Shards = [Mutex<HashMap<Box<str>, ClusterPolls>>; SHARDS];
const SHARDS: usize = 32;
/// The parts `flush_part` writes one by one: a shard each.
pub const FLUSH_PARTS: usize = SHARDS;

/// Shared by every request; cheap to clone.
#[derive(Clone)]
pub struct PollTracker {
    polls: Arc<Shards>,
    /// A cluster with no poll for this long is reported stale.
    pub stale_after: u64,
    /// Woken by a poll that makes a feed fresh (a first poll, or one after a silence longer
    /// than `stale_after`), so the file soon says what the server says: the offline commands
    /// read it. Repeated polls wait for the regular flush.
    freshened: Arc<tokio::sync::Notify>,
    /// Polls that made a feed fresh, counted: what was computed from staleness before a
    /// larger count may be out of date (the fleet summary's cache).
    revivals: Arc<AtomicU64>,
}

/// Flux polls every 10 minutes by default; three missed polls make a cluster stale.
pub const DEFAULT_STALE_AFTER_SECONDS: u64 = 1800;

impl Default for PollTracker {
    fn default() -> Self {
        PollTracker {
            polls: Arc::new(std::array::from_fn(|_| Mutex::default())),
            stale_after: DEFAULT_STALE_AFTER_SECONDS,
            freshened: Arc::default(),
            revivals: Arc::default(),
        }
    }
}

impl PollTracker {
    /// Whether the most recent of these polls is older than `stale_after` (or there is none).
    pub fn is_stale(&self, polls: &[Option<Poll>; 3], now: u64) -> bool {
        self.fresh_until(polls, now).is_none()
    }

    /// The last second these polls keep their cluster fresh, if it is fresh at `now`.
    pub fn fresh_until(&self, polls: &[Option<Poll>; 3], now: u64) -> Option<u64> {
        let last = polls.iter().flatten().map(|p| p.at).max()?;
        let until = last.saturating_add(self.stale_after);
        (now <= until).then_some(until)
    }

    /// `fresh_until` of the polls of the cluster with this DNS name, read in place (a
    /// fleet-wide view asks it of every cluster).
    pub fn fresh_until_of(&self, cluster_dns: &str, now: u64) -> Option<u64> {
        let shard = self.shard(cluster_dns);
        self.fresh_until(&shard.get(cluster_dns)?.polls, now)
    }

    /// `is_stale` of the cluster with this DNS name, read in place: a fleet-wide view asks
    /// it of every cluster, and a copy of its polls (three shared strings) costs more than
    /// the question.
    pub fn is_stale_of(&self, cluster_dns: &str, now: u64) -> bool {
        self.fresh_until_of(cluster_dns, now).is_none()
    }

    /// Polls so far that made a feed fresh.
    pub fn revivals(&self) -> u64 {
        self.revivals.load(Ordering::Relaxed)
    }

    fn shard(
        &self,
        cluster_dns: &str,
    ) -> std::sync::MutexGuard<'_, HashMap<Box<str>, ClusterPolls>> {
        use std::hash::{BuildHasher, RandomState};
        // One fixed hasher per process: a cluster always lands in the same shard.
        static HASHER: std::sync::OnceLock<RandomState> = std::sync::OnceLock::new();
        let index = HASHER.get_or_init(RandomState::new).hash_one(cluster_dns) as usize % SHARDS;
        self.polls[index].lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Notes a successful poll. Runs on every Flux request: no I/O, no allocation when the
    /// client is the one seen last time, and one shard's lock.
    pub fn record(&self, cluster_dns: &str, feed: Feed, user_agent: &str, now: u64) {
        let mut map = self.shard(cluster_dns);
        let entry = match map.get_mut(cluster_dns) {
            Some(entry) => entry,
            None => map.entry(cluster_dns.into()).or_default(),
        };
        let i = slot(feed);
        let was_fresh = entry.polls[i]
            .as_ref()
            .is_some_and(|poll| now.saturating_sub(poll.at) <= self.stale_after);
        if !was_fresh {
            self.revivals.fetch_add(1, Ordering::Relaxed);
            self.freshened.notify_one();
        }
        match &mut entry.polls[i] {
            Some(poll) if &*poll.user_agent == user_agent => poll.at = now,
            other => {
                *other = Some(Poll {
                    at: now,
                    user_agent: user_agent.into(),
                })
            }
        }
        entry.dirty[i] = true;
    }

    /// Resolves when a poll made a feed fresh since the last call.
    pub async fn freshened(&self) {
        self.freshened.notified().await;
    }

    /// The last poll of each feed of the cluster with this DNS name.
    pub fn get(&self, cluster_dns: &str) -> [Option<Poll>; 3] {
        self.shard(cluster_dns)
            .get(cluster_dns)
            .map(|e| e.polls.clone())
            .unwrap_or_default()
    }

    /// Loads what earlier runs flushed.
    pub fn load(&self, conn: &Connection) -> Result<()> {
        let mut stmt = conn
            .prepare("SELECT cluster_dns, feed, last_poll_at, user_agent FROM cluster_polls")
            .db()?;
        let mut rows = stmt.query([]).db()?;
        while let Some(row) = rows.next().db()? {
            let dns: String = row.get(0).db()?;
            let feed: String = row.get(1).db()?;
            let Some(feed) = Feed::ALL.into_iter().find(|f| f.segment() == feed) else {
                continue;
            };
            let at: i64 = row.get(2).db()?;
            let user_agent: String = row.get(3).db()?;
            self.shard(&dns)
                .entry(dns.as_str().into())
                .or_default()
                .polls[slot(feed)] = Some(Poll {
                at: at.max(0) as u64,
                user_agent: user_agent.into(),
            });
        }
        Ok(())
    }

    /// Writes the polls recorded since the last flush, inside the caller's transaction.
    pub fn flush(&self, tx: &Connection) -> Result<usize> {
        self.flush_shards(tx, 0..SHARDS)
    }

    /// `flush`, for part `part` of `FLUSH_PARTS` only: the regular flush writes one part at a
    /// time, spread over its interval, so a large fleet's polls (100,000 rows) never arrive
    /// at the writer and the CPU in one burst.
    pub fn flush_part(&self, tx: &Connection, part: usize) -> Result<usize> {
        let shard = part % SHARDS;
        self.flush_shards(tx, shard..shard + 1)
    }

    fn flush_shards(&self, tx: &Connection, shards: std::ops::Range<usize>) -> Result<usize> {
        let pending: Vec<(Box<str>, Feed, Poll)> = {
            let mut pending = Vec::new();
            for shard in &self.polls[shards] {
                let mut map = shard.lock().unwrap_or_else(|e| e.into_inner());
                for (dns, entry) in map.iter_mut() {
                    for feed in Feed::ALL {
                        let i = slot(feed);
                        if std::mem::take(&mut entry.dirty[i])
                            && let Some(poll) = &entry.polls[i]
                        {
                            pending.push((dns.clone(), feed, poll.clone()));
                        }
                    }
                }
            }
            pending
        };
        if pending.is_empty() {
            return Ok(0);
        }
        {
            let mut upsert = tx
                .prepare_cached(
                    // Not for a cluster deleted since it polled (its rows went with it).
                    "INSERT INTO cluster_polls (cluster_dns, feed, last_poll_at, user_agent) \
                     SELECT ?1, ?2, ?3, ?4 WHERE EXISTS (SELECT 1 FROM clusters WHERE cluster_dns = ?1) \
                     ON CONFLICT (cluster_dns, feed) DO UPDATE SET last_poll_at = excluded.last_poll_at, \
                     user_agent = excluded.user_agent",
                )
                .db()?;
            for (dns, feed, poll) in &pending {
                upsert
                    .execute(params![
                        &**dns,
                        feed.segment(),
                        poll.at as i64,
                        &*poll.user_agent
                    ])
                    .db()?;
            }
        }
        Ok(pending.len())
    }
}

/// `flux-operator/v0.33.0` → `v0.33.0`.
pub fn operator_version(user_agent: &str) -> Option<&str> {
    user_agent
        .strip_prefix("flux-operator/")
        .map(|rest| rest.split_whitespace().next().unwrap_or(rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_flushes_and_loads_back() {
        let mut conn = Connection::open_in_memory().unwrap();
        crate::store::migrate::migrate(&mut conn, |_| Ok(())).unwrap();
        conn.execute_batch(
            "INSERT INTO clusters (id, cluster_name, cluster_dns, environment) VALUES ('a', 'a', 'a.example.com', 'dev')",
        )
        .unwrap();
        let tracker = PollTracker::default();
        tracker.record(
            "gone.example.com",
            Feed::Namespaces,
            "flux-operator/v0.33.0",
            100,
        );
        tracker.record(
            "a.example.com",
            Feed::Namespaces,
            "flux-operator/v0.33.0",
            100,
        );
        tracker.record(
            "a.example.com",
            Feed::Namespaces,
            "flux-operator/v0.33.0",
            160,
        );
        tracker.flush(&conn).unwrap();
        let rows: i64 = conn
            .query_row("SELECT count(*) FROM cluster_polls", [], |r| r.get(0))
            .unwrap();
        assert_eq!(
            rows, 1,
            "one row, the latest poll; none for a cluster that is gone"
        );
        assert_eq!(tracker.flush(&conn).unwrap(), 0, "nothing new");
        let reloaded = PollTracker::default();
        reloaded.load(&conn).unwrap();
        let polls = reloaded.get("a.example.com");
        assert_eq!(polls[1].as_ref().map(|p| p.at), Some(160));
        assert!(polls[0].is_none() && polls[2].is_none());
        assert_eq!(operator_version("flux-operator/v0.33.0"), Some("v0.33.0"));
        assert_eq!(operator_version("curl/8.0"), None);
    }

    #[test]
    fn a_round_of_part_flushes_writes_every_poll_once() {
        let mut conn = Connection::open_in_memory().unwrap();
        crate::store::migrate::migrate(&mut conn, |_| Ok(())).unwrap();
        let tracker = PollTracker::default();
        for i in 0..200 {
            let dns = format!("c{i}.example.com");
            conn.execute(
                "INSERT INTO clusters (id, cluster_name, cluster_dns, environment) VALUES (?1, ?1, ?2, 'dev')",
                params![format!("c{i}"), dns],
            )
            .unwrap();
            tracker.record(&dns, Feed::PlatformComponents, "flux-operator/v0.33.0", 100);
        }
        let parts: Vec<usize> = (0..FLUSH_PARTS)
            .map(|part| tracker.flush_part(&conn, part).unwrap())
            .collect();
        assert_eq!(parts.iter().sum::<usize>(), 200, "every poll, once");
        assert!(
            parts.iter().all(|&n| n < 200),
            "spread over the parts: {parts:?}"
        );
        let rows: i64 = conn
            .query_row("SELECT count(*) FROM cluster_polls", [], |r| r.get(0))
            .unwrap();
        assert_eq!(rows, 200);
        assert_eq!(tracker.flush(&conn).unwrap(), 0, "nothing left");
    }
}
