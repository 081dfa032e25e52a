//! An edge replica's copy (README, "Edge replicas on Litestream"). `litestream restore -f` keeps the file a copy of
//! the hub's; this side only ever opens it read-only, for the length of one load, and serves
//! everything from memory in between: Litestream's follower applies changes under SQLite's
//! locks and a reader holding the file would stall it.
//!
//! A load reads, in one read transaction, the inventory revision, the hub's heartbeat and the
//! named tokens, and when the revision moved the whole feed cache (every cluster, the fleet
//! list). A load that fails (the file mid-update, missing, of another schema) changes
//! nothing: the last good copy keeps being served.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rusqlite::{Connection, OpenFlags, OptionalExtension};

use super::migrate;
use super::sql::SqlResultExt;
use crate::error::{AppError, Result};

/// How a replica's copy stands.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CopyStatus {
    /// When the copy now served was loaded (Unix seconds).
    pub loaded_at: Option<i64>,
    /// Its inventory revision.
    pub revision: Option<i64>,
    /// Litestream's position when it was loaded (`<db>-txid`).
    pub txid: Option<String>,
    /// When the hub last wrote its heartbeat into it (Unix seconds).
    pub heartbeat_at: Option<i64>,
    pub clusters: usize,
    /// Why the last load failed, if it did.
    pub last_error: Option<String>,
    pub loads: u64,
    pub failures: u64,
}

/// A replica's side of the copy: where it is and how it stands.
#[derive(Debug)]
pub struct Copy {
    path: PathBuf,
    /// Where writes go, for the 405 answers.
    pub hub_url: Option<String>,
    status: RwLock<CopyStatus>,
}

impl Copy {
    pub fn new(path: &Path, hub_url: Option<String>) -> Arc<Copy> {
        Arc::new(Copy {
            path: path.to_owned(),
            hub_url,
            status: RwLock::default(),
        })
    }

    pub fn status(&self) -> CopyStatus {
        self.status
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Litestream's position file beside the copy.
    pub fn txid_path(&self) -> PathBuf {
        let mut name = self.path.as_os_str().to_owned();
        name.push("-txid");
        PathBuf::from(name)
    }

    /// The position Litestream last applied, if it wrote one.
    pub fn txid(&self) -> Option<String> {
        std::fs::read_to_string(self.txid_path())
            .ok()
            .map(|text| text.trim().to_owned())
            .filter(|text| !text.is_empty())
    }

    /// What a write is told.
    pub fn refusal(&self) -> String {
        match &self.hub_url {
            Some(hub) => format!(
                "this server is a read-only replica of the inventory; send writes to the hub at {hub}"
            ),
            None => "this server is a read-only replica of the inventory; send writes to the hub \
                     (hub_url is not configured here)"
                .into(),
        }
    }

    fn note(&self, update: impl FnOnce(&mut CopyStatus)) {
        update(&mut self.status.write().unwrap_or_else(|e| e.into_inner()));
    }
}

impl super::Store {
    /// Loads the copy from a fresh read-only connection, closed again before returning.
    /// Returns whether the inventory (not only the heartbeat or tokens) changed.
    pub fn load_copy(&self) -> Result<bool> {
        let Some(copy) = self.replica.clone() else {
            return Err(AppError::Internal(
                "load_copy on a server that is not a replica".into(),
            ));
        };
        let txid = copy.txid();
        let previous = copy.status().revision;
        let loaded = (|| {
            let conn = Connection::open_with_flags(
                &copy.path,
                OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )
            .db()?;
            conn.busy_timeout(std::time::Duration::from_secs(2)).db()?;
            let tx = conn.unchecked_transaction().db()?;
            let version = migrate::schema_version(&tx)?;
            if version != migrate::SCHEMA_VERSION {
                return Err(AppError::Unavailable(format!(
                    "the copy has schema version {version}, this binary serves version {}: run \
                     the hub's and the replica's binaries at the same version",
                    migrate::SCHEMA_VERSION
                )));
            }
            let revision = super::revision::revision(&tx)?;
            let heartbeat_at = heartbeat(&tx)?;
            self.tokens.load_from(&tx)?;
            let clusters = if Some(revision) != previous {
                Some(self.cache.load_complete(&tx)?)
            } else {
                None
            };
            tx.finish().db()?;
            Ok((revision, heartbeat_at, clusters))
        })();
        let now = self.clock().now();
        match loaded {
            Ok((revision, heartbeat_at, clusters)) => {
                copy.note(|status| {
                    status.loaded_at = Some(now);
                    status.revision = Some(revision);
                    status.txid = txid;
                    status.heartbeat_at = heartbeat_at;
                    if let Some(clusters) = clusters {
                        status.clusters = clusters;
                    }
                    status.last_error = None;
                    status.loads += 1;
                });
                Ok(clusters.is_some())
            }
            Err(err) => {
                copy.note(|status| {
                    status.last_error = Some(err.to_string());
                    status.failures += 1;
                });
                Err(err)
            }
        }
    }
}

/// When the hub last wrote its heartbeat.
pub fn heartbeat(conn: &Connection) -> Result<Option<i64>> {
    conn.prepare_cached("SELECT at FROM hub_heartbeat WHERE id = 1")
        .db()?
        .query_row([], |row| row.get(0))
        .optional()
        .db()
        .map(|at: Option<i64>| at.filter(|at| *at > 0))
}

/// The hub's heartbeat: one row, rewritten every `HEARTBEAT_EVERY`, so a replica can tell
/// how old its copy is even when the inventory does not change.
pub fn beat(conn: &Connection, now: i64) -> Result<()> {
    conn.prepare_cached("UPDATE hub_heartbeat SET at = ?1 WHERE id = 1")
        .db()?
        .execute([now])
        .db()?;
    Ok(())
}
