//! The database file and its connections: a small pool for reads, one connection for every
//! write of this process, each call on tokio's blocking pool.
//!
//! Reads run in a read transaction on a pooled connection, gated by a semaphore sized to the
//! pool, so async tasks queue for a connection instead of parking blocking threads. Writes are
//! queued (FIFO) for the one writer connection: two writes of this process never meet at
//! SQLite's lock, so `busy_timeout` only ever waits for another process.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use r2d2::{Pool, PooledConnection};
use r2d2_sqlite::SqliteConnectionManager;
use rusqlite::Connection;
use tokio::sync::Semaphore;

use super::Role;
use super::sql::storage_error;
use super::{Resource, audit, feed_cache, inbox, polls, replica, stored, tokens, watch};
use crate::error::{AppError, Result};

/// How long a connection waits for another writer before the request fails with 503.
pub(super) const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections in the pool. Flux polls are answered from the feed cache, so SQLite sees
/// writes, cache loads and CRUD reads only; a few connections keep memory small.
const POOL_SIZE: u32 = 4;
/// Threads for blocking work: the pool, the writer, the outside-commit watcher and a spare.
pub const BLOCKING_THREADS: usize = POOL_SIZE as usize + 3;
/// Page cache per pooled connection, in KiB (SQLite's default is 2 MiB).
pub const PAGE_CACHE_KIB: i64 = 1024;
/// The writer's page cache, in KiB: a write touching every cluster of a large fleet reads
/// the assignment tables twice (checks, preview).
const WRITER_CACHE_KIB: i64 = 8 * 1024;

/// Applied to every pooled connection: these settings are per connection in SQLite.
/// On a hub, Litestream does the checkpointing (README, "Edge replicas on Litestream"): SQLite's automatic one is off.
fn init_connection(conn: &mut Connection, role: Role) -> rusqlite::Result<()> {
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.execute_batch("PRAGMA foreign_keys = ON; PRAGMA synchronous = FULL;")?;
    if role == Role::Hub {
        conn.pragma_update(None, "wal_autocheckpoint", 0)?;
    }
    conn.pragma_update(None, "cache_size", -PAGE_CACHE_KIB)
}

/// How the store applies the inventory rules, from the configuration.
#[derive(Clone, Copy, Debug)]
pub struct StoreSettings {
    /// Refuse (rather than warn about) writes that leave a dependency unassigned.
    pub strict_dependencies: bool,
    /// When a write needs `?confirm=`.
    pub guard: crate::domain::blast::Guard,
    /// A cluster that has not polled this long is stale.
    pub poll_stale_after: u64,
    /// Rollout gates count only reports authenticated as the cluster itself
    /// (`events_require_cluster_identity`).
    pub rollout_gate_needs_identity: bool,
}

impl Default for StoreSettings {
    fn default() -> Self {
        StoreSettings {
            strict_dependencies: false,
            guard: Default::default(),
            poll_stale_after: polls::DEFAULT_STALE_AFTER_SECONDS,
            rollout_gate_needs_identity: false,
        }
    }
}

#[derive(Clone)]
pub struct Store {
    pool: Pool<SqliteConnectionManager>,
    permits: Arc<Semaphore>,
    /// The one connection every write of this process uses, in arrival order (none on a
    /// replica, which never writes).
    pub(super) writer: Arc<tokio::sync::Mutex<Option<Connection>>>,
    /// Standalone, hub or replica.
    role: Role,
    /// A replica's copy: everything it serves comes from what it last loaded.
    pub(super) replica: Option<Arc<replica::Copy>>,
    path: PathBuf,
    pub(super) settings: StoreSettings,
    /// The one clock every stamp and deadline is read from.
    clock: crate::clock::Clock,
    /// Encoded Flux feeds; dropped by every committed write.
    pub(super) cache: feed_cache::FeedCache,
    /// When the last API write committed (Unix seconds; 0 = none since start).
    pub(super) last_write: Arc<std::sync::atomic::AtomicU64>,
    /// When each cluster last polled each feed.
    pub(super) polls: polls::PollTracker,
    /// Named read tokens.
    pub(super) tokens: tokens::TokenRegistry,
    /// Events received from the clusters, not yet written.
    pub(super) reports: inbox::ReportInbox,
    /// The last whole-fleet summary.
    summaries: super::summary::SummaryCache,
    /// Wakes the rollout controller (new reports, a verb).
    pub(super) rollouts_wake: Arc<tokio::sync::Notify>,
    /// The last `data_version` of the writer: other processes' commits change it.
    pub(super) outside: Arc<std::sync::Mutex<watch::ChangeWatcher>>,
    /// The opened file's device and inode: a path that now names another file (or none)
    /// means writes would land in a file nobody will ever open again.
    identity: Option<(u64, u64)>,
    file_gone: Arc<std::sync::atomic::AtomicBool>,
    /// Set when a background integrity check found damage: writes and `/ready` refuse.
    damaged: Arc<std::sync::OnceLock<String>>,
}

/// The device and inode of `path`, if it exists.
fn file_identity(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

/// Creates `path` empty and readable by its owner only, unless it exists. SQLite gives the
/// `-wal` and `-shm` files the database file's permissions, so they are private too.
pub fn create_private_file(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => Ok(()),
        Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(err) => Err(err),
    }
}

impl Store {
    /// Opens (creating if needed) the database file and switches it to WAL.
    /// Does not migrate: see [`migrate::migrate`].
    pub fn open(path: &Path) -> Result<Store> {
        Store::open_as(path, Role::Standalone)
    }

    /// `open`, for a standalone server or a hub.
    pub fn open_as(path: &Path, role: Role) -> Result<Store> {
        create_private_file(path).map_err(|err| {
            AppError::Internal(format!("cannot create database {}: {err}", path.display()))
        })?;
        // Another program's database is refused before anything touches it: opened
        // read-only, so it is not switched to WAL and gets no -wal or -shm file.
        {
            let probe = Connection::open_with_flags(
                path,
                rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY
                    | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )
            .map_err(|err| {
                AppError::Internal(format!("cannot open database {}: {err}", path.display()))
            })?;
            super::migrate::check_ownership(&probe)?;
        }
        let manager =
            SqliteConnectionManager::file(path).with_init(move |conn| init_connection(conn, role));
        let pool = Pool::builder()
            .max_size(POOL_SIZE)
            .min_idle(Some(1))
            .connection_timeout(BUSY_TIMEOUT)
            .build(manager)
            .map_err(|err| {
                AppError::Internal(format!("cannot open database {}: {err}", path.display()))
            })?;
        let mut writer = Connection::open(path).map_err(|err| {
            AppError::Internal(format!("cannot open database {}: {err}", path.display()))
        })?;
        init_connection(&mut writer, role).map_err(storage_error)?;
        writer
            .pragma_update(None, "cache_size", -WRITER_CACHE_KIB)
            .map_err(storage_error)?;
        let store = Store::assemble(pool, Some(writer), path, role, None);
        let conn = store.connection()?;
        // WAL persists in the file; readers never block the writer and vice versa.
        let mode: String = conn
            .query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))
            .map_err(storage_error)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(AppError::Internal(format!(
                "database {} cannot use WAL (journal_mode is {mode}); is it on a network filesystem?",
                path.display()
            )));
        }
        Ok(store)
    }

    /// A replica (README, "Edge replicas on Litestream"): the file Litestream follows is opened only by
    /// `load_copy`, read-only and for the length of one load; nothing here holds it.
    pub fn open_replica(path: &Path, hub_url: Option<String>) -> Store {
        let manager = SqliteConnectionManager::file(path)
            .with_flags(rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY);
        // Never connected: `connection` refuses on a replica.
        let pool = Pool::builder()
            .max_size(1)
            .min_idle(Some(0))
            .build_unchecked(manager);
        let copy = replica::Copy::new(path, hub_url);
        Store::assemble(pool, None, path, Role::Replica, Some(copy))
    }

    fn assemble(
        pool: Pool<SqliteConnectionManager>,
        writer: Option<Connection>,
        path: &Path,
        role: Role,
        replica: Option<Arc<replica::Copy>>,
    ) -> Store {
        Store {
            pool,
            permits: Arc::new(Semaphore::new(POOL_SIZE as usize)),
            writer: Arc::new(tokio::sync::Mutex::new(writer)),
            role,
            replica,
            path: path.to_owned(),
            settings: StoreSettings::default(),
            clock: crate::clock::Clock::system(),
            cache: feed_cache::FeedCache::default(),
            last_write: Arc::default(),
            polls: polls::PollTracker::default(),
            tokens: tokens::TokenRegistry::default(),
            reports: inbox::ReportInbox::default(),
            summaries: Default::default(),
            rollouts_wake: Arc::default(),
            outside: Arc::default(),
            identity: file_identity(path),
            file_gone: Arc::default(),
            damaged: Arc::default(),
        }
    }

    pub fn role(&self) -> Role {
        self.role
    }

    pub fn is_replica(&self) -> bool {
        self.replica.is_some()
    }

    /// A replica's copy and how it stands.
    pub fn replica(&self) -> Option<&replica::Copy> {
        self.replica.as_deref()
    }

    /// The store, applying `settings`.
    pub fn with_settings(mut self, settings: StoreSettings) -> Self {
        self.polls.stale_after = settings.poll_stale_after;
        self.settings = settings;
        self
    }

    pub fn settings(&self) -> StoreSettings {
        self.settings
    }

    /// The store, reading time from `clock` (tests set it by hand).
    pub fn with_clock(mut self, clock: crate::clock::Clock) -> Self {
        self.clock = clock;
        self
    }

    /// The one clock.
    pub fn clock(&self) -> &crate::clock::Clock {
        &self.clock
    }

    /// The Flux feed cache in front of this store.
    pub fn feed_cache(&self) -> &feed_cache::FeedCache {
        &self.cache
    }

    /// One Flux feed of the cluster with this DNS name, as served (from the feed cache).
    pub async fn feed(&self, cluster_dns: &str, feed: super::feeds::Feed) -> Result<Vec<u8>> {
        self.cache.feed(self, cluster_dns, feed).await
    }

    /// The fleet list (optionally one environment), paged, encoded as `{"inputs": [...]}`.
    pub async fn fleet_feed(
        &self,
        environment: Option<crate::domain::model::Environment>,
        page: super::Page,
    ) -> Result<(usize, Vec<u8>)> {
        self.cache.fleet(self, environment, page).await
    }

    pub fn tokens(&self) -> &tokens::TokenRegistry {
        &self.tokens
    }

    /// `NotFound` unless a cluster has this DNS name; answered from the feed cache (which
    /// loads the cluster on a miss), without encoding a feed.
    pub async fn require_cluster(&self, cluster_dns: &str) -> Result<()> {
        if self.cache.is_cached(cluster_dns) {
            return Ok(());
        }
        self.feed(cluster_dns, super::feeds::Feed::Namespaces)
            .await
            .map(drop)
    }

    pub fn reports(&self) -> &inbox::ReportInbox {
        &self.reports
    }

    pub fn summaries(&self) -> &super::summary::SummaryCache {
        &self.summaries
    }

    pub fn polls(&self) -> &polls::PollTracker {
        &self.polls
    }

    /// Whether the path still names the file that was opened; remembers a loss for good
    /// (a file restored at the same path is a different file: restart to use it).
    pub fn check_file_identity(&self) -> bool {
        use std::sync::atomic::Ordering;
        if self.file_gone.load(Ordering::Relaxed) {
            return false;
        }
        let same = file_identity(&self.path) == self.identity;
        if !same {
            self.file_gone.store(true, Ordering::Relaxed);
            tracing::error!(
                path = %self.path.display(),
                "the database file was deleted or replaced; refusing writes until restart"
            );
        }
        same
    }

    /// Marks the database as damaged (found by an integrity check after start).
    pub fn mark_damaged(&self, reason: String) {
        tracing::error!(%reason, "refusing writes until restart");
        let _ = self.damaged.set(reason);
    }

    /// `503` when the database file is no longer the one opened, or was found damaged.
    pub fn ensure_file(&self) -> Result<()> {
        if let Some(reason) = self.damaged.get() {
            return Err(AppError::Unavailable(reason.clone()));
        }
        if self.check_file_identity() {
            return Ok(());
        }
        Err(AppError::Unavailable(format!(
            "the database file {} was deleted or replaced while serving; restart flux-inputs \
             (restore a backup first if the file is gone)",
            self.path.display()
        )))
    }

    /// Whether another process committed since the last check (read on the writer, after
    /// the writes queued before it).
    pub async fn outside_commit(&self) -> Result<bool> {
        self.on_writer(|store, conn| {
            store
                .outside
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .outside_commit(conn)
        })
        .await
    }

    /// Another process changed the database: drop everything read from it.
    pub fn forget_cached(&self) {
        self.cache.invalidate();
        self.tokens.invalidate();
        self.summaries.forget();
    }

    /// Connections checked out of the pool right now.
    pub fn connections_in_use(&self) -> u32 {
        let state = self.pool.state();
        state.connections - state.idle_connections
    }

    /// When the last API write committed, in Unix seconds (0: none since start).
    pub fn last_write(&self) -> u64 {
        self.last_write.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Folds the WAL into the database file (outside any transaction).
    pub async fn checkpoint(&self) -> Result<()> {
        let store = self.clone();
        self.blocking(move || {
            store
                .connection()?
                .execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")
                .map_err(storage_error)
        })
        .await
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A pooled connection for blocking code (start-up, CLI). Async code uses `read`/`write`.
    pub fn connection(&self) -> Result<PooledConnection<SqliteConnectionManager>> {
        if let Some(copy) = &self.replica {
            return Err(AppError::Unavailable(format!(
                "not served by a replica, which answers from its loaded copy only: {}",
                copy.refusal().replace("send writes to", "ask")
            )));
        }
        self.pool.get().map_err(|err| {
            AppError::Unavailable(format!("no database connection available: {err}"))
        })
    }

    /// Runs `f` on the blocking pool inside a read transaction, so every query in `f` sees
    /// the same committed state.
    pub async fn read<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        let store = self.clone();
        self.blocking(move || {
            let conn = store.connection()?;
            let tx = conn.unchecked_transaction().map_err(storage_error)?;
            let value = f(&tx)?;
            // Nothing was written; ending the transaction releases the WAL snapshot.
            tx.finish().map_err(storage_error)?;
            Ok(value)
        })
        .await
    }

    pub async fn fetch<R: Resource>(&self, id: String) -> Result<R> {
        self.read(move |conn| stored(conn, &id)).await
    }

    /// The resource and its revision (the ETag: the last audit entry that touched it).
    pub async fn fetch_with_revision<R: Resource>(&self, id: String) -> Result<(R, i64)> {
        self.read(move |conn| {
            Ok((
                stored(conn, &id)?,
                audit::last_revision(conn, R::COLLECTION, &id)?,
            ))
        })
        .await
    }

    pub(super) async fn blocking<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce() -> Result<T> + Send + 'static,
    {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| AppError::Unavailable("the store is shutting down".into()))?;
        let span = tracing::Span::current();
        match tokio::task::spawn_blocking(move || span.in_scope(f)).await {
            Ok(result) => result,
            // Re-raise a panic in the caller so it is not mistaken for a store answer.
            Err(err) if err.is_panic() => std::panic::resume_unwind(err.into_panic()),
            Err(err) => Err(AppError::Internal(format!("blocking task failed: {err}"))),
        }
    }
}
