//! The audit trail: who changed what, with the state before and after, one entry per write,
//! in the write's own transaction. Its revision numbers are the resources' ETags.

use rusqlite::{Connection, OptionalExtension, params};
use serde_json::Value;

use super::sql::SqlResultExt;
use crate::error::{AppError, Result};

/// One recorded write.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub revision: i64,
    pub at: i64,
    pub actor: String,
    pub method: String,
    pub kind: String,
    pub resource_id: String,
    pub before: Option<Value>,
    pub after: Option<Value>,
    /// The write changed clusters a maintenance window closed, confirmed with
    /// `?confirm_closed=`: how many, and the first of them with their windows.
    pub window_override: Option<Value>,
}

/// Who writes, and how (`POST`, `PUT`, `DELETE`, `REVERT`, `IMPORT`).
#[derive(Debug, Clone)]
pub struct Change {
    pub actor: String,
    pub method: &'static str,
}

/// Appends an entry stamped `at` (Unix seconds); returns its revision.
pub fn append(
    conn: &Connection,
    change: &Change,
    at: i64,
    kind: &str,
    resource_id: &str,
    before: Option<&Value>,
    after: Option<&Value>,
) -> Result<i64> {
    let text = |v: Option<&Value>| v.map(Value::to_string);
    conn.prepare_cached(
        "INSERT INTO audit_log (at, actor, method, kind, resource_id, before, after) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )
    .db()?
    .execute(params![at, change.actor, change.method, kind, resource_id, text(before), text(after)])
    .db()?;
    Ok(conn.last_insert_rowid())
}

/// The revision of the last write to a resource; 0 if none was recorded (e.g. seeded). A
/// cluster's counts the writes of one component's entry on many clusters that changed it.
pub fn last_revision(conn: &Connection, kind: &str, resource_id: &str) -> Result<i64> {
    conn.prepare_cached(
        "SELECT max(coalesce((SELECT max(revision) FROM audit_log WHERE kind = ?1 AND resource_id = ?2), 0), \
         CASE WHEN ?1 = 'clusters' THEN coalesce((SELECT max(revision) FROM audit_clusters \
         WHERE cluster_id = ?2), 0) ELSE 0 END)",
    )
    .db()?
    .query_row(params![kind, resource_id], |row| row.get(0))
    .db()
}

/// Names the clusters the entry at `revision` changed (an entry of kind
/// `cluster_components`): it becomes their ETag and part of their history.
pub fn touched(conn: &Connection, revision: i64, clusters: &[&str]) -> Result<()> {
    let mut stmt = conn
        .prepare_cached("INSERT INTO audit_clusters (cluster_id, revision) VALUES (?1, ?2)")
        .db()?;
    for cluster in clusters {
        stmt.execute(params![cluster, revision]).db()?;
    }
    Ok(())
}

fn from_row(row: &rusqlite::Row) -> rusqlite::Result<Entry> {
    let json = |text: Option<String>| text.and_then(|t| serde_json::from_str(&t).ok());
    Ok(Entry {
        revision: row.get(0)?,
        at: row.get(1)?,
        actor: row.get(2)?,
        method: row.get(3)?,
        kind: row.get(4)?,
        resource_id: row.get(5)?,
        before: json(row.get(6)?),
        after: json(row.get(7)?),
        window_override: json(row.get(8)?),
    })
}

const SELECT: &str = "SELECT revision, at, actor, method, kind, resource_id, before, after, window_override FROM audit_log";

pub fn get(conn: &Connection, revision: i64) -> Result<Entry> {
    conn.prepare_cached(&format!("{SELECT} WHERE revision = ?1"))
        .db()?
        .query_row([revision], from_row)
        .optional()
        .db()?
        .ok_or_else(|| AppError::NotFound(format!("no audit entry with revision {revision}")))
}

/// An entry is about resource `id` (a parameter) when it wrote it, or when it changed that
/// cluster's entry of a component.
fn has_id(id: &str) -> String {
    format!(
        "(resource_id = {id} OR (kind = 'cluster_components' AND revision IN \
         (SELECT revision FROM audit_clusters WHERE cluster_id = {id})))"
    )
}

/// Filters of `GET /audit`.
#[derive(Debug, Default, Clone)]
pub struct Filter {
    pub kind: Option<String>,
    pub resource_id: Option<String>,
    /// Only entries after this revision.
    pub since_revision: Option<i64>,
    pub limit: Option<u32>,
}

/// Entries in revision order.
pub fn list(conn: &Connection, filter: &Filter) -> Result<Vec<Entry>> {
    let mut stmt = conn
        .prepare_cached(&format!(
            "{SELECT} WHERE (?1 IS NULL OR kind = ?1) AND (?2 IS NULL OR {HAS_ID}) \
             AND revision > coalesce(?3, 0) ORDER BY revision LIMIT ?4",
            HAS_ID = has_id("?2")
        ))
        .db()?;
    let rows = stmt
        .query_map(
            params![
                filter.kind,
                filter.resource_id,
                filter.since_revision,
                filter.limit.map_or(-1, i64::from)
            ],
            from_row,
        )
        .db()?;
    rows.collect::<rusqlite::Result<Vec<_>>>().db()
}

/// Which entries the console's audit page shows: every one given must hold.
#[derive(Debug, Default, Clone)]
pub struct Narrow {
    pub kind: Option<String>,
    pub resource_id: Option<String>,
    pub actor: Option<String>,
}

/// The newest `limit` entries before `before` (all when `None`) that `narrow` admits, newest
/// first: the console's audit page.
pub fn recent(
    conn: &Connection,
    before: Option<i64>,
    limit: u32,
    narrow: &Narrow,
) -> Result<Vec<Entry>> {
    let mut stmt = conn
        .prepare_cached(&format!(
            "{SELECT} WHERE revision < coalesce(?1, 9223372036854775807) \
             AND (?3 IS NULL OR kind = ?3) AND (?4 IS NULL OR {HAS_ID}) \
             AND (?5 IS NULL OR actor = ?5) ORDER BY revision DESC LIMIT ?2",
            HAS_ID = has_id("?4")
        ))
        .db()?;
    let rows = stmt
        .query_map(
            params![before, limit, narrow.kind, narrow.resource_id, narrow.actor],
            from_row,
        )
        .db()?;
    rows.collect::<rusqlite::Result<Vec<_>>>().db()
}

/// Deletes entries beyond the retention (the oldest first), at most `batch` per call, so a
/// large prune never holds the write lock for long. Returns how many were deleted.
pub fn prune(
    conn: &Connection,
    keep_count: Option<u64>,
    keep_seconds: Option<u64>,
    batch: u32,
    now: i64,
) -> Result<usize> {
    let newest_kept_by_count: i64 = match keep_count {
        Some(keep) => conn
            .query_row(
                "SELECT coalesce((SELECT revision FROM audit_log ORDER BY revision DESC LIMIT 1 OFFSET ?1), 0)",
                [keep as i64],
                |row| row.get(0),
            )
            .db()?,
        None => 0,
    };
    let oldest_allowed_at = keep_seconds.map_or(i64::MIN, |s| now - s as i64);
    let deleted = conn
        .prepare_cached(
            "DELETE FROM audit_log WHERE revision IN (SELECT revision FROM audit_log \
         WHERE revision <= ?1 OR at < ?2 ORDER BY revision LIMIT ?3)",
        )
        .db()?
        .execute(params![newest_kept_by_count, oldest_allowed_at, batch])
        .db()?;
    // Entries go oldest first, so the clusters of the pruned ones are those below the oldest kept.
    conn.prepare_cached(
        "DELETE FROM audit_clusters WHERE revision < \
         coalesce((SELECT min(revision) FROM audit_log), 9223372036854775807)",
    )
    .db()?
    .execute([])
    .db()?;
    Ok(deleted)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn database_with(entries: usize) -> Connection {
        let mut conn = Connection::open_in_memory().unwrap();
        crate::store::migrate::migrate(&mut conn, |_| Ok(())).unwrap();
        let change = Change {
            actor: "test".into(),
            method: "PUT",
        };
        for i in 0..entries {
            append(
                &conn,
                &change,
                1_000,
                "namespaces",
                &format!("ns-{i}"),
                None,
                None,
            )
            .unwrap();
        }
        conn
    }

    #[test]
    fn prune_by_count_keeps_the_newest_in_batches() {
        let conn = database_with(25);
        assert_eq!(prune(&conn, Some(10), None, 10, 2_000).unwrap(), 10);
        assert_eq!(prune(&conn, Some(10), None, 10, 2_000).unwrap(), 5);
        assert_eq!(prune(&conn, Some(10), None, 10, 2_000).unwrap(), 0);
        let left = list(&conn, &Filter::default()).unwrap();
        assert_eq!(left.len(), 10);
        assert_eq!(left[0].resource_id, "ns-15", "the oldest went first");
        // Revisions are never reused after pruning.
        let next = append(
            &conn,
            &Change {
                actor: "t".into(),
                method: "POST",
            },
            2_000,
            "namespaces",
            "x",
            None,
            None,
        )
        .unwrap();
        assert_eq!(next, 26);
    }

    #[test]
    fn prune_by_age_and_last_revision() {
        let conn = database_with(3);
        assert_eq!(
            prune(&conn, None, Some(3600), 100, 2_000).unwrap(),
            0,
            "all are fresh"
        );
        conn.execute("UPDATE audit_log SET at = at - 7200 WHERE revision = 1", [])
            .unwrap();
        assert_eq!(prune(&conn, None, Some(3600), 100, 2_000).unwrap(), 1);
        assert_eq!(last_revision(&conn, "namespaces", "ns-2").unwrap(), 3);
        assert_eq!(last_revision(&conn, "namespaces", "nope").unwrap(), 0);
    }

    #[test]
    fn a_component_write_is_each_clusters_etag_and_history_until_pruned() {
        let conn = database_with(2);
        let change = Change {
            actor: "rollout:r".into(),
            method: "PUT",
        };
        let empty = serde_json::json!({});
        let fleet = append(
            &conn,
            &change,
            1_000,
            "cluster_components",
            "app",
            Some(&empty),
            Some(&empty),
        )
        .unwrap();
        touched(&conn, fleet, &["c1", "c2"]).unwrap();
        append(&conn, &change, 1_000, "clusters", "c2", None, None).unwrap();
        assert_eq!(last_revision(&conn, "clusters", "c1").unwrap(), fleet);
        assert_eq!(last_revision(&conn, "clusters", "c2").unwrap(), fleet + 1);
        assert_eq!(
            last_revision(&conn, "namespaces", "c1").unwrap(),
            0,
            "clusters only"
        );
        let history = |id: &str| {
            let filter = Filter {
                resource_id: Some(id.into()),
                ..Filter::default()
            };
            list(&conn, &filter)
                .unwrap()
                .iter()
                .map(|e| e.revision)
                .collect::<Vec<_>>()
        };
        assert_eq!(history("c1"), [fleet]);
        assert_eq!(history("c2"), [fleet, fleet + 1]);
        assert_eq!(prune(&conn, Some(1), None, 100, 2_000).unwrap(), 3);
        assert_eq!(last_revision(&conn, "clusters", "c1").unwrap(), 0);
        let left: i64 = conn
            .query_row("SELECT count(*) FROM audit_clusters", [], |row| row.get(0))
            .unwrap();
        assert_eq!(left, 0);
    }
}
