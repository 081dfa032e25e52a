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

/// The three feeds of one cluster, and what the file holds of them.
#[derive(Default)]
struct ClusterPolls {
    polls: [Option<Poll>; 3],
    /// Per feed, the poll time last written to `cluster_polls` (Unix seconds; 0: none, or
    /// a new client to write).
    written: [u32; 3],
}

impl ClusterPolls {
    /// The poll of slot `i`, if the file should be given it: it is later than the one
    /// written, by at least `after` seconds unless nothing (or another client) was written.
    fn due(&self, i: usize, after: u64) -> Option<&Poll> {
        let poll = self.polls[i].as_ref()?;
        let written = u64::from(self.written[i]);
        (poll.at > written && (written == 0 || poll.at - written >= after)).then_some(poll)
    }
}

fn stamp(at: u64) -> u32 {
    u32::try_from(at).unwrap_or(u32::MAX)
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
/// The parts `Flush::Part` writes one by one: a shard each.
pub const FLUSH_PARTS: usize = SHARDS;

/// Which polls a flush writes.
#[derive(Clone, Copy, Debug)]
pub enum Flush {
    /// Every poll later than the one in the file (at shutdown: the file then holds exactly
    /// what the server saw).
    Everything,
    /// The polls that are due (`rewrite_after`): a first poll, a new client, a feed that
    /// turned fresh, a poll time that moved on far enough.
    Due,
    /// `Due`, of part `n` of `FLUSH_PARTS` only: the regular flush writes one part at a
    /// time, spread over its interval, so a large fleet's polls never arrive at the writer
    /// and the CPU in one burst.
    Part(usize),
}

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
/// The most a poll time in the file lags the one in memory (`rewrite_after`).
const MAX_REWRITE_AFTER_SECONDS: u64 = 300;

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
                });
                // A new client is written at the next flush.
                entry.written[i] = 0;
            }
        }
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
            let at = at.max(0) as u64;
            let mut shard = self.shard(&dns);
            let entry = shard.entry(dns.as_str().into()).or_default();
            entry.polls[slot(feed)] = Some(Poll {
                at,
                user_agent: user_agent.into(),
            });
            entry.written[slot(feed)] = stamp(at);
        }
        Ok(())
    }

    /// Writes the polls `which` chooses, inside the caller's transaction.
    pub fn flush(&self, tx: &Connection, which: Flush) -> Result<usize> {
        match which {
            Flush::Everything => self.flush_shards(tx, 0..SHARDS, 1),
            Flush::Due => self.flush_shards(tx, 0..SHARDS, self.rewrite_after()),
            Flush::Part(part) => {
                let shard = part % SHARDS;
                self.flush_shards(tx, shard..shard + 1, self.rewrite_after())
            }
        }
    }

    /// How far a poll time already in the file must move on before it is written again: a
    /// tenth of `stale_after`, at most five minutes. What reads the file (a restart after a
    /// crash, the offline commands) judges staleness against `stale_after` (30 minutes by
    /// default), so it may call a silent cluster stale at most that much early; writing
    /// every cluster's poll every 30 s cost a fleet polled often (100,000 clusters) a write
    /// of a few thousand rows every second.
    fn rewrite_after(&self) -> u64 {
        (self.stale_after / 10).clamp(1, MAX_REWRITE_AFTER_SECONDS)
    }

    fn flush_shards(
        &self,
        tx: &Connection,
        shards: std::ops::Range<usize>,
        after: u64,
    ) -> Result<usize> {
        let pending: Vec<(Box<str>, Feed, Poll)> = {
            let mut pending = Vec::new();
            for shard in &self.polls[shards] {
                let mut map = shard.lock().unwrap_or_else(|e| e.into_inner());
                for (dns, entry) in map.iter_mut() {
                    for feed in Feed::ALL {
                        let i = slot(feed);
                        if let Some(poll) = entry.due(i, after).cloned() {
                            entry.written[i] = stamp(poll.at);
                            pending.push((dns.clone(), feed, poll));
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
        tracker.flush(&conn, Flush::Everything).unwrap();
        let rows: i64 = conn
            .query_row("SELECT count(*) FROM cluster_polls", [], |r| r.get(0))
            .unwrap();
        assert_eq!(
            rows, 1,
            "one row, the latest poll; none for a cluster that is gone"
        );
        assert_eq!(
            tracker.flush(&conn, Flush::Everything).unwrap(),
            0,
            "nothing new"
        );
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
            .map(|part| tracker.flush(&conn, Flush::Part(part)).unwrap())
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
        assert_eq!(
            tracker.flush(&conn, Flush::Everything).unwrap(),
            0,
            "nothing left"
        );
    }

    #[test]
    fn a_poll_time_in_the_file_is_written_again_only_once_it_moved_on() {
        let mut conn = Connection::open_in_memory().unwrap();
        crate::store::migrate::migrate(&mut conn, |_| Ok(())).unwrap();
        conn.execute_batch(
            "INSERT INTO clusters (id, cluster_name, cluster_dns, environment) VALUES ('a', 'a', 'a.example.com', 'dev')",
        )
        .unwrap();
        let stored = |conn: &Connection| -> (i64, String) {
            conn.query_row(
                "SELECT last_poll_at, user_agent FROM cluster_polls",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap()
        };
        let tracker = PollTracker {
            stale_after: 1000,
            ..PollTracker::default()
        };
        let agent = "flux-operator/v0.33.0";
        tracker.record("a.example.com", Feed::Namespaces, agent, 100);
        assert_eq!(tracker.flush(&conn, Flush::Due).unwrap(), 1, "a first poll");
        tracker.record("a.example.com", Feed::Namespaces, agent, 150);
        assert_eq!(tracker.flush(&conn, Flush::Due).unwrap(), 0, "50 s on");
        tracker.record("a.example.com", Feed::Namespaces, agent, 199);
        assert_eq!(tracker.flush(&conn, Flush::Due).unwrap(), 0, "99 s on");
        assert_eq!(stored(&conn), (100, agent.to_owned()));
        tracker.record("a.example.com", Feed::Namespaces, agent, 200);
        assert_eq!(
            tracker.flush(&conn, Flush::Due).unwrap(),
            1,
            "a tenth of 1000 s"
        );
        assert_eq!(stored(&conn).0, 200);
        tracker.record(
            "a.example.com",
            Feed::Namespaces,
            "flux-operator/v0.34.0",
            201,
        );
        assert_eq!(tracker.flush(&conn, Flush::Due).unwrap(), 1, "a new client");
        assert_eq!(stored(&conn), (201, "flux-operator/v0.34.0".to_owned()));
        tracker.record(
            "a.example.com",
            Feed::Namespaces,
            "flux-operator/v0.34.0",
            205,
        );
        assert_eq!(tracker.flush(&conn, Flush::Due).unwrap(), 0);
        assert_eq!(
            tracker.flush(&conn, Flush::Everything).unwrap(),
            1,
            "at shutdown"
        );
        assert_eq!(stored(&conn).0, 205);
        assert_eq!(tracker.flush(&conn, Flush::Everything).unwrap(), 0);
        let reloaded = PollTracker {
            stale_after: 1000,
            ..PollTracker::default()
        };
        reloaded.load(&conn).unwrap();
        assert_eq!(
            reloaded.flush(&conn, Flush::Everything).unwrap(),
            0,
            "loaded as written"
        );
    }
}
