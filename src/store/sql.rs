//! What every table module shares: SQLite errors mapped to the service's, paging, and the
//! small queries the integrity checks repeat. Depends on nothing else of the store.

use rusqlite::{Connection, ErrorCode};

use crate::error::{AppError, Result};

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
pub(super) fn exists(conn: &Connection, table: &'static str, id: &str) -> Result<bool> {
    conn.prepare_cached(&format!("SELECT 1 FROM {table} WHERE id = ?1"))
        .db()?
        .exists([id])
        .db()
}

/// Of `ids`, the ones that have no row in `table`, in the order given.
pub(super) fn missing_ids<'a>(
    conn: &Connection,
    table: &'static str,
    ids: impl IntoIterator<Item = &'a str>,
) -> Result<Vec<String>> {
    // One statement for the whole list: a cluster references dozens of definitions, and a
    // statement per id costs more than the lookups themselves.
    let ids: Vec<&str> = ids.into_iter().collect();
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let list = serde_json::to_string(&ids)
        .map_err(|err| AppError::Internal(format!("cannot encode ids: {err}")))?;
    let mut stmt = conn
        .prepare_cached(&format!(
            "SELECT j.value FROM json_each(?1) j WHERE NOT EXISTS \
             (SELECT 1 FROM {table} t WHERE t.id = j.value) ORDER BY j.key"
        ))
        .db()?;
    let mut missing: Vec<String> = Vec::new();
    for id in stmt.query_map([list], |row| row.get::<_, String>(0)).db()? {
        let id = id.db()?;
        if !missing.contains(&id) {
            missing.push(id);
        }
    }
    Ok(missing)
}

/// Ids from a one-column query, in row order.
pub(super) fn query_ids(conn: &Connection, sql: &str, id: &str) -> Result<Vec<String>> {
    let mut stmt = conn.prepare_cached(sql).db()?;
    let rows = stmt.query_map([id], |row| row.get(0)).db()?;
    rows.collect::<rusqlite::Result<Vec<String>>>().db()
}

/// `409` naming the clusters that still reference a definition.
pub(super) fn referrers_conflict(kind: &str, id: &str, clusters: &[String]) -> Result<()> {
    if clusters.is_empty() {
        return Ok(());
    }
    Err(AppError::Conflict(format!(
        "{kind} '{id}' is still referenced by cluster(s) {}",
        crate::domain::validate::quoted_list(clusters)
    )))
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
}
