//! Schema versions, recorded in `PRAGMA user_version`.
//!
//! `MIGRATIONS[n]` takes the schema from version n to n + 1. Version 1 is `schema.sql`.
//! A shipped entry is never edited; a change to the schema is a new entry.

use rusqlite::Connection;

use super::{SqlResultExt, write_transaction};
use crate::error::{AppError, Result};

const MIGRATIONS: &[&str] = &[include_str!("../../schema.sql")];

/// The schema version this binary serves.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// What start-up found and did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Migration {
    /// A new, empty database: the schema was created (and the seed, if any, loaded).
    Created,
    /// An older schema was brought up to date.
    Upgraded { from: i64 },
    /// Nothing to do.
    Current,
}

pub fn schema_version(conn: &Connection) -> Result<i64> {
    conn.query_row("PRAGMA user_version", [], |row| row.get(0))
        .db()
}

/// Brings the schema up to date in one transaction. `on_create` runs in that same
/// transaction when the database was empty, so a failing seed leaves the file untouched.
pub fn migrate(
    conn: &mut Connection,
    on_create: impl FnOnce(&rusqlite::Transaction) -> Result<()>,
) -> Result<Migration> {
    write_transaction(conn, |tx| {
        let from = schema_version(tx)?;
        if from > SCHEMA_VERSION {
            return Err(AppError::Internal(format!(
                "the database schema is version {from}, newer than this binary's {SCHEMA_VERSION}; \
                 run a newer flux-inputs or restore a backup"
            )));
        }
        for (index, step) in MIGRATIONS.iter().enumerate().skip(from as usize) {
            tx.execute_batch(step).map_err(|err| {
                AppError::Internal(format!(
                    "migration to schema version {} failed: {err}",
                    index + 1
                ))
            })?;
        }
        tx.pragma_update(None, "user_version", SCHEMA_VERSION)
            .db()?;
        Ok(match from {
            0 => {
                on_create(tx)?;
                Migration::Created
            }
            v if v == SCHEMA_VERSION => Migration::Current,
            v => Migration::Upgraded { from: v },
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrates_an_empty_database_once() {
        let mut conn = Connection::open_in_memory().unwrap();
        assert_eq!(migrate(&mut conn, |_| Ok(())).unwrap(), Migration::Created);
        assert_eq!(schema_version(&conn).unwrap(), SCHEMA_VERSION);
        assert_eq!(
            migrate(&mut conn, |_| panic!("not on a current db")).unwrap(),
            Migration::Current
        );
    }

    #[test]
    fn a_failing_seed_leaves_the_database_empty() {
        let mut conn = Connection::open_in_memory().unwrap();
        let result = migrate(&mut conn, |_| Err(AppError::Validation("bad seed".into())));
        assert!(result.is_err());
        assert_eq!(schema_version(&conn).unwrap(), 0);
    }

    #[test]
    fn refuses_a_newer_schema() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .unwrap();
        let err = migrate(&mut conn, |_| Ok(())).unwrap_err();
        assert!(err.to_string().contains("newer than this binary"));
    }
}
