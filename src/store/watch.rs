//! Noticing commits made by other processes (`flux-inputs import`, `token revoke`, `sqlite3`).
//!
//! `PRAGMA data_version` on a connection changes whenever *another* connection commits, the
//! server's own pooled writers included. So the server counts its own commits: a change seen
//! while the count stood still is another process's commit; a change in a second when the
//! server also wrote is another process's only if the inventory revision differs from the one
//! the server's last write left. A failed check changes nothing: the next one compares with
//! the last version actually seen, so a busy database delays a change, never hides it.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use rusqlite::Connection;

use super::SqlResultExt;
use crate::error::Result;

/// The server's own commits, as the watcher needs to know them.
#[derive(Clone, Default)]
pub struct OwnCommits {
    /// Incremented just before each commit of this process.
    count: Arc<AtomicU64>,
    /// The inventory revision this process's last inventory write left.
    revision: Arc<AtomicI64>,
}

impl OwnCommits {
    /// Call before committing; a commit that then fails only costs a revision check.
    pub fn note(&self) {
        self.count.fetch_add(1, Ordering::SeqCst);
    }

    /// Call before committing an inventory write that leaves `revision`.
    pub fn note_revision(&self, revision: i64) {
        self.revision.fetch_max(revision, Ordering::SeqCst);
        self.note();
    }
}

/// A connection of its own and the last state it saw.
pub struct ChangeWatcher {
    conn: Connection,
    own: OwnCommits,
    last_version: Option<i64>,
    last_own: u64,
}

/// How long a check waits for a lock before it gives up until the next tick.
const CHECK_BUSY_TIMEOUT: Duration = Duration::from_millis(200);

impl ChangeWatcher {
    pub fn open(path: &Path, own: OwnCommits) -> Result<ChangeWatcher> {
        let conn = Connection::open_with_flags(
            path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .db()?;
        conn.busy_timeout(CHECK_BUSY_TIMEOUT).db()?;
        Ok(ChangeWatcher {
            conn,
            own,
            last_version: None,
            last_own: 0,
        })
    }

    /// Whether another process committed since the last successful check.
    pub fn outside_commit(&mut self) -> Result<bool> {
        // Read the count first: an own commit racing with this check then shows as "own".
        let own = self.own.count.load(Ordering::SeqCst);
        let version: i64 = self
            .conn
            .query_row("PRAGMA data_version", [], |row| row.get(0))
            .db()?;
        let changed = self.last_version.is_some_and(|last| last != version);
        let wrote_meanwhile = own != self.last_own;
        let outside = if !changed {
            false
        } else if !wrote_meanwhile {
            true
        } else {
            let revision: i64 = self
                .conn
                .query_row(
                    "SELECT revision FROM inventory_revision WHERE id = 1",
                    [],
                    |row| row.get(0),
                )
                .db()?;
            revision != self.own.revision.load(Ordering::SeqCst)
        };
        // Only a check that completed moves the baseline.
        self.last_version = Some(version);
        self.last_own = own;
        Ok(outside)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn database() -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.db");
        let mut conn = Connection::open(&path).unwrap();
        conn.execute_batch("PRAGMA journal_mode = WAL").unwrap();
        crate::store::migrate::migrate(&mut conn, |_| Ok(())).unwrap();
        (dir, path)
    }

    fn bump(conn: &Connection) {
        conn.execute(
            "UPDATE inventory_revision SET revision = revision + 1 WHERE id = 1",
            [],
        )
        .unwrap();
    }

    #[test]
    fn outside_commits_are_seen_own_commits_are_not() {
        let (_dir, path) = database();
        let own = OwnCommits::default();
        let mut watcher = ChangeWatcher::open(&path, own.clone()).unwrap();
        assert!(!watcher.outside_commit().unwrap(), "first check: baseline");

        let server = Connection::open(&path).unwrap();
        own.note_revision(1);
        bump(&server);
        assert!(!watcher.outside_commit().unwrap(), "the server's own write");

        let cli = Connection::open(&path).unwrap();
        bump(&cli);
        assert!(watcher.outside_commit().unwrap(), "another process wrote");
        assert!(!watcher.outside_commit().unwrap(), "reported once");

        // Both in one interval: the revision tells.
        own.note_revision(3);
        bump(&server);
        bump(&cli);
        assert!(watcher.outside_commit().unwrap());
        // A token revoke bumps no revision, but nothing of the server's wrote meanwhile.
        cli.execute(
            "INSERT INTO api_tokens (name, token_sha256, created_at) VALUES ('t', printf('%064d', 0), 1)",
            [],
        )
        .unwrap();
        assert!(watcher.outside_commit().unwrap());
    }
}
