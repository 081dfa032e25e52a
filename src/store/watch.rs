//! Noticing commits made by other processes (`flux-inputs import`, `token revoke`, `sqlite3`).
//!
//! Every write of the server goes through its one writer connection, and `PRAGMA
//! data_version` read on a connection changes exactly when *another* connection committed.
//! So the version read on the writer changes only for other processes' commits: nothing to
//! tell apart, nothing to miss, however often the server itself writes. A failed check
//! changes nothing: the next one compares with the last version actually seen.

use rusqlite::Connection;

use super::sql::SqlResultExt;
use crate::error::Result;

/// The last `data_version` the writer connection showed.
#[derive(Default)]
pub struct ChangeWatcher {
    last_version: Option<i64>,
}

impl ChangeWatcher {
    /// Whether another process committed since the last successful check. `writer` must be
    /// the connection every write of this process goes through.
    pub fn outside_commit(&mut self, writer: &Connection) -> Result<bool> {
        let version: i64 = writer
            .query_row("PRAGMA data_version", [], |row| row.get(0))
            .db()?;
        let outside = self.last_version.is_some_and(|last| last != version);
        self.last_version = Some(version);
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
        let mut watcher = ChangeWatcher::default();
        let server = Connection::open(&path).unwrap();
        assert!(
            !watcher.outside_commit(&server).unwrap(),
            "first check: baseline"
        );
        bump(&server);
        assert!(
            !watcher.outside_commit(&server).unwrap(),
            "the server's own write"
        );

        let cli = Connection::open(&path).unwrap();
        bump(&cli);
        assert!(
            watcher.outside_commit(&server).unwrap(),
            "another process wrote"
        );
        assert!(!watcher.outside_commit(&server).unwrap(), "reported once");

        // Both in one interval, and a token revoke that bumps no revision: still seen.
        bump(&server);
        cli.execute(
            "INSERT INTO api_tokens (name, token_sha256, created_at) VALUES ('t', printf('%064d', 0), 1)",
            [],
        )
        .unwrap();
        bump(&server);
        assert!(watcher.outside_commit(&server).unwrap());
    }
}
