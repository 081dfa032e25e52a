//! The inventory revision: every flux-inputs write transaction adds one before it commits,
//! and everything cached from the inventory (the feed cache, a replica's copy) is tied to it.

use rusqlite::Connection;

use super::sql::SqlResultExt;
use crate::error::Result;

/// Marks the inventory as changed; once per write transaction.
pub fn bump_revision(conn: &Connection) -> Result<()> {
    conn.prepare_cached("UPDATE inventory_revision SET revision = revision + 1 WHERE id = 1")
        .db()?
        .execute([])
        .db()?;
    Ok(())
}

/// The inventory revision everything cached is tied to.
pub fn revision(conn: &Connection) -> Result<i64> {
    conn.prepare_cached("SELECT revision FROM inventory_revision WHERE id = 1")
        .db()?
        .query_row([], |row| row.get(0))
        .db()
}
