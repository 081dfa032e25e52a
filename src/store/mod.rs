//! SQLite storage: one file, a pool of connections for reads, one queued writer, every call
//! off the async workers. `pool.rs` opens the file and runs reads; `write.rs` is the one write
//! pipeline every change goes through. The modules per table group hold the SQL.

pub mod assignments;
pub mod audit;
pub mod clusters;
pub mod components;
pub mod convergence;
pub mod feed_cache;
pub mod feeds;
pub mod inbox;
pub mod migrate;
pub mod namespaces;
pub mod overlays;
pub mod polls;
pub mod pool;
pub mod replica;
pub mod reports;
pub mod resource;
pub mod revision;
pub mod role;
pub mod rolebindings;
pub mod rollouts;
pub mod rules;
pub mod seed;
pub mod sql;
pub mod summary;
pub mod tokens;
pub mod watch;
pub mod windows;
pub mod write;

use rusqlite::Connection;

use crate::error::{AppError, Result};
pub use pool::{BLOCKING_THREADS, PAGE_CACHE_KIB, Store, StoreSettings, create_private_file};
pub use resource::Resource;
pub use role::Role;
pub use sql::{Page, SqlResultExt, storage_error};
pub use write::{RevertOptions, Reverted, WriteRequest, Written, write_transaction};

fn stored<R: Resource>(conn: &Connection, id: &str) -> Result<R> {
    R::get(conn, id)?.ok_or_else(|| AppError::NotFound(format!("{} '{id}' not found", R::KIND)))
}

#[cfg(test)]
mod tests {
    use super::*;

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
