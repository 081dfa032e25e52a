//! SQLite storage: one file, a pool of connections, every call off the async workers.
//!
//! `Store::read` and `Store::write` are the only ways in. Both run the closure on tokio's
//! blocking pool, gated by a semaphore sized to the connection pool, so async tasks queue for
//! a connection instead of parking blocking threads. Writes are `BEGIN IMMEDIATE`
//! transactions: the write lock is taken up front and `busy_timeout` does the waiting.

pub mod audit;
pub mod checks;
pub mod clusters;
pub mod components;
pub mod feed_cache;
pub mod feeds;
pub mod migrate;
pub mod namespaces;
pub mod polls;
pub mod resource;
pub mod rolebindings;
pub mod seed;
pub mod tokens;
pub mod watch;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use r2d2::{Pool, PooledConnection};
use r2d2_sqlite::SqliteConnectionManager;
use rusqlite::{Connection, ErrorCode, Transaction, TransactionBehavior};
use tokio::sync::Semaphore;

use crate::domain::model::{Cluster, Namespace, PlatformComponent, Rolebinding};
use crate::error::{AppError, Result};
pub use resource::Resource;

/// How long a connection waits for another writer before the request fails with 503.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections in the pool. Flux polls are answered from the feed cache, so SQLite sees
/// writes, cache loads and CRUD reads only; a few connections keep memory small.
const POOL_SIZE: u32 = 4;
/// Threads for blocking work: the pool, plus the external-change poll and a spare.
pub const BLOCKING_THREADS: usize = POOL_SIZE as usize + 2;
/// Page cache per pooled connection, in KiB (SQLite's default is 2 MiB).
pub const PAGE_CACHE_KIB: i64 = 1024;

/// Applied to every pooled connection: these settings are per connection in SQLite.
fn init_connection(conn: &mut Connection) -> rusqlite::Result<()> {
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.execute_batch("PRAGMA foreign_keys = ON; PRAGMA synchronous = FULL;")?;
    conn.pragma_update(None, "cache_size", -PAGE_CACHE_KIB)
}

#[derive(Clone)]
pub struct Store {
    pool: Pool<SqliteConnectionManager>,
    permits: Arc<Semaphore>,
    path: PathBuf,
    /// Refuse (rather than warn about) writes that leave a dependency unassigned.
    strict_dependencies: bool,
    /// Encoded Flux feeds; dropped by every committed write.
    cache: feed_cache::FeedCache,
    /// When the last API write committed (Unix seconds; 0 = none since start).
    last_write: Arc<std::sync::atomic::AtomicU64>,
    /// When each cluster last polled each feed.
    polls: polls::PollTracker,
    /// Named read tokens.
    tokens: tokens::TokenRegistry,
    /// This process's commits, so the outside-commit watcher can tell them apart.
    own_commits: watch::OwnCommits,
    /// The opened file's device and inode: a path that now names another file (or none)
    /// means writes would land in a file nobody will ever open again.
    identity: Option<(u64, u64)>,
    file_gone: Arc<std::sync::atomic::AtomicBool>,
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

/// What a write did, or would do (dry run).
#[derive(Debug)]
pub struct Written<R> {
    /// The resource as stored (as deleted, for a delete).
    pub value: R,
    /// Accepted, but worth telling the client (sent as `Warning` headers).
    pub warnings: Vec<String>,
    /// For a dry run: how each affected cluster's feeds would change.
    pub changes: Option<Vec<crate::domain::feed::FeedChange>>,
    /// The audit revision of this write (the resource's new ETag).
    pub revision: i64,
}

/// How a write was asked for.
#[derive(Debug, Clone)]
pub struct WriteRequest {
    /// Run every check, report, and store nothing.
    pub dry_run: bool,
    /// Who and how, for the audit trail.
    pub change: audit::Change,
    /// `If-Match`: the revision the client last saw.
    pub if_match: Option<i64>,
}

/// What a revert did.
#[derive(Debug)]
pub struct Reverted {
    pub kind: &'static str,
    pub id: String,
    pub revision: i64,
    pub warnings: Vec<String>,
}

impl Store {
    /// Opens (creating if needed) the database file and switches it to WAL.
    /// Does not migrate: see [`migrate::migrate`].
    pub fn open(path: &Path) -> Result<Store> {
        create_private_file(path).map_err(|err| {
            AppError::Internal(format!("cannot create database {}: {err}", path.display()))
        })?;
        let manager = SqliteConnectionManager::file(path).with_init(init_connection);
        let pool = Pool::builder()
            .max_size(POOL_SIZE)
            .min_idle(Some(1))
            .connection_timeout(BUSY_TIMEOUT)
            .build(manager)
            .map_err(|err| {
                AppError::Internal(format!("cannot open database {}: {err}", path.display()))
            })?;
        let store = Store {
            pool,
            permits: Arc::new(Semaphore::new(POOL_SIZE as usize)),
            path: path.to_owned(),
            strict_dependencies: false,
            cache: feed_cache::FeedCache::default(),
            last_write: Arc::default(),
            polls: polls::PollTracker::default(),
            tokens: tokens::TokenRegistry::default(),
            own_commits: watch::OwnCommits::default(),
            identity: file_identity(path),
            file_gone: Arc::default(),
        };
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

    pub fn with_strict_dependencies(mut self, strict: bool) -> Self {
        self.strict_dependencies = strict;
        self
    }

    /// The Flux feed cache in front of this store.
    pub fn feed_cache(&self) -> &feed_cache::FeedCache {
        &self.cache
    }

    pub fn tokens(&self) -> &tokens::TokenRegistry {
        &self.tokens
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

    /// `503` when the database file is no longer the one opened.
    pub fn ensure_file(&self) -> Result<()> {
        if self.check_file_identity() {
            return Ok(());
        }
        Err(AppError::Unavailable(format!(
            "the database file {} was deleted or replaced while serving; restart flux-inputs \
             (restore a backup first if the file is gone)",
            self.path.display()
        )))
    }

    /// A watcher for commits made by other processes, on a connection of its own.
    pub fn change_watcher(&self) -> Result<watch::ChangeWatcher> {
        watch::ChangeWatcher::open(&self.path, self.own_commits.clone())
    }

    /// Another process changed the database: drop everything read from it.
    pub fn forget_cached(&self) {
        self.cache.invalidate();
        self.tokens.invalidate();
    }

    /// Writes the poll and token last-used times noted since the last flush, in one
    /// transaction.
    pub async fn flush_usage(&self) -> Result<usize> {
        let polls = self.polls.clone();
        let tokens = self.tokens.clone();
        let own = self.own_commits.clone();
        self.blocking_with_connection(move |conn| {
            write_transaction(conn, |tx| {
                let flushed = polls.flush(tx)?;
                tokens.flush_last_used(tx)?;
                own.note();
                Ok(flushed)
            })
        })
        .await
    }

    pub fn with_stale_after(mut self, seconds: u64) -> Self {
        self.polls.stale_after = seconds;
        self
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

    /// Runs `f` with a pooled connection on the blocking pool, outside any transaction.
    pub async fn blocking_with_connection<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    {
        let store = self.clone();
        self.blocking(move || f(&mut *store.connection()?)).await
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

    /// Runs `f` inside an IMMEDIATE transaction, committed when `f` returns `Ok`.
    pub async fn write<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Transaction) -> Result<T> + Send + 'static,
    {
        let store = self.clone();
        self.blocking(move || {
            store.ensure_file()?;
            let mut conn = store.connection()?;
            write_transaction(&mut conn, |tx| {
                let value = f(tx)?;
                store.own_commits.note();
                Ok(value)
            })
        })
        .await
    }

    /// Stores a new resource and returns it as stored.
    pub async fn create<R: Resource>(&self, value: R, request: WriteRequest) -> Result<Written<R>> {
        value.validate()?;
        let id = value.id().to_owned();
        self.checked_write(id.clone(), request, move |tx| {
            R::insert(tx, &value)?;
            stored(tx, &id)
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

    /// Applies a partial update: present fields replace, omitted fields keep their values.
    pub async fn update<R: Resource>(
        &self,
        id: String,
        update: R::Update,
        request: WriteRequest,
    ) -> Result<Written<R>> {
        if let Some(body_id) = R::update_id(&update).filter(|body_id| *body_id != id) {
            return Err(AppError::BadRequest(format!(
                "body id '{body_id}' differs from the path id '{id}'; ids cannot be changed"
            )));
        }
        self.checked_write(id.clone(), request, move |tx| {
            let updated = stored::<R>(tx, &id)?.apply(update);
            updated.validate()?;
            R::update(tx, &updated)?;
            stored(tx, &id)
        })
        .await
    }

    /// Deletes a resource and returns what was deleted.
    pub async fn delete<R: Resource>(
        &self,
        id: String,
        request: WriteRequest,
    ) -> Result<Written<R>> {
        self.checked_write(id.clone(), request, move |tx| R::delete(tx, &id))
            .await
    }

    /// Puts a resource back to its state before an audit revision: deletes what that
    /// revision created, restores what it changed or deleted. A new, audited write with
    /// every check; returns the kind and id it touched and the revision of the revert.
    pub async fn revert(&self, revision: i64, actor: String) -> Result<Reverted> {
        let entry = self.read(move |conn| audit::get(conn, revision)).await?;
        let request = WriteRequest {
            dry_run: false,
            change: audit::Change {
                actor,
                method: "REVERT",
            },
            if_match: None,
        };
        match entry.kind.as_str() {
            "clusters" => self.revert_to::<Cluster>(entry, request).await,
            "platform_components" => self.revert_to::<PlatformComponent>(entry, request).await,
            "namespaces" => self.revert_to::<Namespace>(entry, request).await,
            "rolebindings" => self.revert_to::<Rolebinding>(entry, request).await,
            tokens::TOKENS => Err(AppError::Validation(format!(
                "audit entry {revision} is a token operation; token values are never stored, so \
                 it cannot be undone: create or revoke the token instead"
            ))),
            other => Err(AppError::Internal(format!(
                "audit entry {revision} has unknown kind '{other}'"
            ))),
        }
    }

    async fn revert_to<R: Resource>(
        &self,
        entry: audit::Entry,
        request: WriteRequest,
    ) -> Result<Reverted> {
        let id = entry.resource_id.clone();
        let target: Option<R> = match &entry.before {
            Some(before) => Some(R::parse_from_json(Some(before.clone())).map_err(|err| {
                AppError::Internal(format!(
                    "audit entry {} holds an unreadable state: {}",
                    entry.revision,
                    err.into_message()
                ))
            })?),
            None => None,
        };
        let key = id.clone();
        let written = self
            .checked_write(id.clone(), request, move |tx| {
                let current = R::get(tx, &key)?;
                match (target, current) {
                    (Some(target), Some(_)) => {
                        target.validate()?;
                        R::update(tx, &target)?;
                        stored(tx, &key)
                    }
                    (Some(target), None) => {
                        target.validate()?;
                        R::insert(tx, &target)?;
                        stored(tx, &key)
                    }
                    (None, Some(_)) => R::delete(tx, &key),
                    (None, None) => Err(AppError::Conflict(format!(
                        "{} '{key}' does not exist; there is nothing to undo",
                        R::KIND
                    ))),
                }
            })
            .await?;
        Ok(Reverted {
            kind: R::COLLECTION,
            id,
            revision: written.revision,
            warnings: written.warnings,
        })
    }

    /// Runs `op` in a write transaction, appends the audit entry, then checks every affected
    /// cluster's feeds before commit. A dry run computes the same answer and the feed
    /// changes, then rolls back. `If-Match` is compared inside the transaction.
    async fn checked_write<R: Resource>(
        &self,
        id: String,
        request: WriteRequest,
        op: impl FnOnce(&Transaction) -> Result<R> + Send + 'static,
    ) -> Result<Written<R>> {
        let strict = self.strict_dependencies;
        let store = self.clone();
        self.blocking(move || {
            store.ensure_file()?;
            let mut conn = store.connection()?;
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(storage_error)?;
            if let Some(expected) = request.if_match {
                let current = audit::last_revision(&tx, R::COLLECTION, &id)?;
                if current != expected {
                    return Err(AppError::PreconditionFailed(format!(
                        "{} '{id}' is at revision {current}, not {expected} (If-Match): reload it and retry",
                        R::KIND
                    )));
                }
            }
            let affected = R::affected_clusters(&tx, &id)?;
            let before = if request.dry_run { checks::snapshot(&tx, &affected)? } else { Default::default() };
            let old_state = R::get(&tx, &id)?.and_then(|r| r.to_json());
            let value = op(&tx)?;
            let new_state = R::get(&tx, &id)?.and_then(|r| r.to_json());
            let revision =
                audit::append(&tx, &request.change, R::COLLECTION, &id, old_state.as_ref(), new_state.as_ref())?;
            feed_cache::bump_revision(&tx)?;
            let after = checks::snapshot(&tx, &affected)?;
            let warnings = checks::check(&tx, &after, strict)?;
            let changes = if request.dry_run {
                tx.rollback().map_err(storage_error)?;
                Some(checks::diff(&before, &after))
            } else {
                store.own_commits.note_revision(feed_cache::revision(&tx)?);
                tx.commit().map_err(storage_error)?;
                // Before the answer goes out, so the client's next read sees its write.
                store.cache.invalidate();
                // A cluster's DNS name may have changed under a scoped token.
                store.tokens.invalidate();
                let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
                store.last_write.store(now.map(|d| d.as_secs()).unwrap_or_default(), std::sync::atomic::Ordering::Relaxed);
                None
            };
            Ok(Written { value, warnings, changes, revision })
        })
        .await
    }

    async fn blocking<T, F>(&self, f: F) -> Result<T>
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

/// Runs `f` in an IMMEDIATE transaction on `conn`; commits on `Ok`, rolls back on `Err`.
pub fn write_transaction<T>(
    conn: &mut Connection,
    f: impl FnOnce(&Transaction) -> Result<T>,
) -> Result<T> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(storage_error)?;
    let value = f(&tx)?;
    tx.commit().map_err(storage_error)?;
    Ok(value)
}

/// Maps a SQLite failure that explicit checks did not anticipate. Constraint failures are
/// still the client's fault (the checks are the friendly path, constraints the guarantee).
pub fn storage_error(err: rusqlite::Error) -> AppError {
    match err.sqlite_error_code() {
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => {
            AppError::Unavailable("the database is busy; retry the request".into())
        }
        Some(ErrorCode::DiskFull) => AppError::Unavailable(
            "the disk holding the database is full; nothing was written: free space and retry"
                .into(),
        ),
        Some(ErrorCode::ConstraintViolation) => AppError::Conflict(format!(
            "the write violates an inventory constraint ({err})"
        )),
        _ => AppError::Internal(format!("sqlite: {err}")),
    }
}

/// Shorthand for `.map_err(storage_error)`.
pub trait SqlResultExt<T> {
    fn db(self) -> Result<T>;
}

impl<T> SqlResultExt<T> for rusqlite::Result<T> {
    fn db(self) -> Result<T> {
        self.map_err(storage_error)
    }
}

/// Paging for list queries; SQLite's `LIMIT -1` means no limit.
#[derive(Clone, Copy, Debug, Default)]
pub struct Page {
    pub limit: Option<u32>,
    pub offset: Option<u32>,
}

impl Page {
    pub fn sql_limit(self) -> i64 {
        self.limit.map_or(-1, i64::from)
    }

    pub fn sql_offset(self) -> i64 {
        self.offset.map_or(0, i64::from)
    }
}

/// Whether a row with this primary key exists in `table`.
fn exists(conn: &Connection, table: &'static str, id: &str) -> Result<bool> {
    conn.prepare_cached(&format!("SELECT 1 FROM {table} WHERE id = ?1"))
        .db()?
        .exists([id])
        .db()
}

/// Of `ids`, the ones that have no row in `table`, in the order given.
fn missing_ids<'a>(
    conn: &Connection,
    table: &'static str,
    ids: impl IntoIterator<Item = &'a str>,
) -> Result<Vec<String>> {
    let mut missing = Vec::new();
    for id in ids {
        if !exists(conn, table, id)? && !missing.iter().any(|m| m == id) {
            missing.push(id.to_owned());
        }
    }
    Ok(missing)
}

/// Ids from a one-column query, in row order.
fn query_ids(conn: &Connection, sql: &str, id: &str) -> Result<Vec<String>> {
    let mut stmt = conn.prepare_cached(sql).db()?;
    let rows = stmt.query_map([id], |row| row.get(0)).db()?;
    rows.collect::<rusqlite::Result<Vec<String>>>().db()
}

/// `409` naming the clusters that still reference a definition.
fn referrers_conflict(kind: &str, id: &str, clusters: &[String]) -> Result<()> {
    if clusters.is_empty() {
        return Ok(());
    }
    Err(AppError::Conflict(format!(
        "{kind} '{id}' is still referenced by cluster(s) {}",
        crate::domain::validate::quoted_list(clusters)
    )))
}

fn stored<R: Resource>(conn: &Connection, id: &str) -> Result<R> {
    R::get(conn, id)?.ok_or_else(|| AppError::NotFound(format!("{} '{id}' not found", R::KIND)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_disk_is_a_503_not_a_500() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE t (x BLOB); PRAGMA max_page_count = 8;")
            .unwrap();
        let err = (0..64)
            .map(|_| conn.execute("INSERT INTO t VALUES (zeroblob(4096))", []))
            .find_map(|r| r.err())
            .expect("the database fills up");
        assert!(
            matches!(storage_error(err), AppError::Unavailable(m) if m.contains("full")),
            "SQLITE_FULL maps to 503"
        );
    }

    #[test]
    fn a_new_database_file_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.db");
        let store = Store::open(&path).unwrap();
        store
            .connection()
            .unwrap()
            .execute_batch("CREATE TABLE t (x); INSERT INTO t VALUES (1);")
            .unwrap();
        for file in ["x.db", "x.db-wal", "x.db-shm"] {
            let mode = std::fs::metadata(dir.path().join(file))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{file}");
        }
    }
}
