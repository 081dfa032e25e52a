//! Every stored record checked against today's write rules. A database written before a rule
//! existed keeps serving; `flux-inputs check` and the start-up log list what breaks it, so an
//! operator can fix it before Kubernetes refuses what Flux renders from it.

use rusqlite::Connection;

use super::Resource;
use super::sql::SqlResultExt;
use crate::domain::model::{Namespace, PlatformComponent, Rolebinding};
use crate::error::{AppError, Result};

/// One line per record that a write of it today would be refused for.
pub fn violations(conn: &Connection) -> Result<Vec<String>> {
    let mut found = Vec::new();
    check::<PlatformComponent>(conn, "platform_components", &mut found)?;
    check::<Namespace>(conn, "namespaces", &mut found)?;
    check::<Rolebinding>(conn, "rolebindings", &mut found)?;
    // Clusters are many: read whole in one pass, not looked up one by one.
    super::clusters::for_each(conn, |cluster| judge(&cluster, &cluster.id, &mut found))?;
    Ok(found)
}

fn check<R: Resource>(conn: &Connection, table: &str, found: &mut Vec<String>) -> Result<()> {
    let ids: Vec<String> = conn
        .prepare(&format!("SELECT id FROM {table} ORDER BY id"))
        .db()?
        .query_map([], |row| row.get(0))
        .db()?
        .collect::<rusqlite::Result<_>>()
        .db()?;
    for id in ids {
        if let Some(record) = R::get(conn, &id)? {
            judge(&record, &id, found)?;
        }
    }
    Ok(())
}

/// Adds a line to `found` if a write of `record` would be refused today.
fn judge<R: Resource>(record: &R, id: &str, found: &mut Vec<String>) -> Result<()> {
    match record.validate() {
        Ok(()) => Ok(()),
        Err(AppError::Validation(message) | AppError::BadRequest(message)) => {
            found.push(format!("{} '{id}': {message}", R::KIND));
            Ok(())
        }
        Err(other) => Err(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_written_before_a_rule_are_listed() {
        let mut conn = Connection::open_in_memory().unwrap();
        crate::store::migrate::migrate(&mut conn, |_| Ok(())).unwrap();
        let long = "a".repeat(60);
        conn.execute_batch(&format!(
            "INSERT INTO platform_components (id, component_path, component_version, oci_url, oci_tag)
                 VALUES ('{long}', 'p', '1', 'oci://x', '1'), ('ok', 'p', '1', 'oci://x', '1');
             INSERT INTO clusters (id, cluster_name, cluster_dns, environment)
                 VALUES ('c', 'Store \u{202e}42', 'c.example.com', 'dev');"
        ))
        .unwrap();
        let found = violations(&conn).unwrap();
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(
            found[0].contains(&long) && found[0].contains("53"),
            "{}",
            found[0]
        );
        assert!(
            found[1].starts_with("cluster 'c'") && found[1].contains("U+202E"),
            "{}",
            found[1]
        );
    }
}
