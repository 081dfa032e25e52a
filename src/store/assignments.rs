//! One cluster's entry for one platform component (its `cluster_components` row and its
//! patch), read and written on its own. A write that changes one component's entry on many
//! clusters at once — a rollout's step, rollback or promotion, and the revert of one — touches
//! only these rows and is audited as one entry of kind `cluster_components` (the component's
//! id, each cluster's entry before and after), not as every cluster whole: at 10,000 clusters
//! that was 70 MB of audit trail and seconds of the writer per promotion.

use std::collections::BTreeMap;

use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::sql::SqlResultExt;
use crate::error::{AppError, Result};

/// The audit kind of a write of one component's entries on many clusters.
pub const KIND: &str = "cluster_components";

/// A cluster's entry for a component as stored: where it is in the cluster's list, and its
/// own values (`None`: the catalog's, or an overlay's).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Listed {
    pub position: i64,
    pub enabled: bool,
    #[serde(default)]
    pub oci_tag: Option<String>,
    #[serde(default)]
    pub component_path: Option<String>,
    /// Its Helm value patch, when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patch: Option<Value>,
}

pub fn read(conn: &Connection, cluster: &str, component: &str) -> Result<Option<Listed>> {
    let found = conn
        .prepare_cached(
            "SELECT cc.position, cc.enabled, cc.oci_tag, cc.component_path, cp.patch \
             FROM cluster_components cc LEFT JOIN cluster_patches cp \
             ON cp.cluster_id = cc.cluster_id AND cp.component_id = cc.component_id \
             WHERE cc.cluster_id = ?1 AND cc.component_id = ?2",
        )
        .db()?
        .query_row([cluster, component], |row| {
            Ok((
                Listed {
                    position: row.get(0)?,
                    enabled: row.get(1)?,
                    oci_tag: row.get(2)?,
                    component_path: row.get(3)?,
                    patch: None,
                },
                row.get::<_, Option<String>>(4)?,
            ))
        })
        .optional()
        .db()?;
    let Some((mut listed, patch)) = found else {
        return Ok(None);
    };
    listed.patch = match patch {
        Some(text) => Some(serde_json::from_str(&text).map_err(|err| {
            AppError::Internal(format!(
                "stored patch of cluster '{cluster}' for '{component}' is not JSON: {err}"
            ))
        })?),
        None => None,
    };
    Ok(Some(listed))
}

/// The position after the last entry of a cluster's list.
pub fn next_position(conn: &Connection, cluster: &str) -> Result<i64> {
    conn.prepare_cached(
        "SELECT coalesce(max(position), -1) + 1 FROM cluster_components WHERE cluster_id = ?1",
    )
    .db()?
    .query_row([cluster], |row| row.get(0))
    .db()
}

/// Stores `target` as the cluster's entry (`None`: removes it, its patch with it), given the
/// entry stored now. An entry put back at a position another component took since goes to
/// the end of the list. Returns the entry as stored.
fn store(
    conn: &Connection,
    cluster: &str,
    component: &str,
    current: Option<&Listed>,
    target: Option<&Listed>,
) -> Result<Option<Listed>> {
    let Some(target) = target else {
        conn.prepare_cached(
            "DELETE FROM cluster_components WHERE cluster_id = ?1 AND component_id = ?2",
        )
        .db()?
        .execute([cluster, component])
        .db()?;
        return Ok(None);
    };
    let mut stored = target.clone();
    if current.is_some_and(|c| c.position == target.position) {
        conn.prepare_cached(
            "UPDATE cluster_components SET enabled = ?3, oci_tag = ?4, component_path = ?5 \
             WHERE cluster_id = ?1 AND component_id = ?2",
        )
        .db()?
        .execute(params![
            cluster,
            component,
            target.enabled,
            target.oci_tag,
            target.component_path
        ])
        .db()?;
    } else {
        if current.is_some() {
            store(conn, cluster, component, current, None)?;
        }
        let taken: bool = conn
            .prepare_cached(
                "SELECT EXISTS (SELECT 1 FROM cluster_components WHERE cluster_id = ?1 AND position = ?2)",
            )
            .db()?
            .query_row(params![cluster, target.position], |row| row.get(0))
            .db()?;
        if taken {
            stored.position = next_position(conn, cluster)?;
        }
        conn.prepare_cached(
            "INSERT INTO cluster_components (cluster_id, component_id, position, enabled, oci_tag, \
             component_path) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )
        .db()?
        .execute(params![
            cluster,
            component,
            stored.position,
            target.enabled,
            target.oci_tag,
            target.component_path
        ])
        .db()?;
    }
    let patch_kept =
        current.is_some_and(|c| c.position == target.position && c.patch == target.patch);
    if !patch_kept {
        conn.prepare_cached(
            "DELETE FROM cluster_patches WHERE cluster_id = ?1 AND component_id = ?2",
        )
        .db()?
        .execute([cluster, component])
        .db()?;
        if let Some(patch) = &target.patch {
            conn.prepare_cached(
                "INSERT INTO cluster_patches (cluster_id, component_id, patch) VALUES (?1, ?2, ?3)",
            )
            .db()?
            .execute(params![cluster, component, patch.to_string()])
            .db()?;
        }
    }
    Ok(Some(stored))
}

/// One component's entries written on many clusters, in a write transaction: the rows change
/// as each is set, and what they were and became is kept for the one audit entry
/// (`Pipeline::recorded_assignments`).
#[derive(Debug)]
pub struct ComponentWrite {
    component: String,
    /// Per changed cluster: its entry before the write and after it (`None`: none).
    changed: BTreeMap<String, (Option<Listed>, Option<Listed>)>,
}

/// What a `ComponentWrite` did, for its audit entry and its checks.
pub struct Written {
    pub component: String,
    /// Each changed cluster's entry before and after, by cluster id (`null`: none).
    pub before: Value,
    pub after: Value,
    /// The changed clusters, each with the entry the write removed, if it removed one (the
    /// component may leave that cluster's feed).
    pub clusters: Vec<(String, Option<Listed>)>,
}

impl ComponentWrite {
    pub fn new(component: &str) -> Self {
        ComponentWrite {
            component: component.to_owned(),
            changed: BTreeMap::new(),
        }
    }

    /// Sets the cluster's entry to `target`, deciding it from the entry stored now (`None`
    /// when there is none). A cluster that is gone is left alone: returns false.
    pub fn set(
        &mut self,
        conn: &Connection,
        cluster: &str,
        target: impl FnOnce(Option<&Listed>) -> Result<Option<Listed>>,
    ) -> Result<bool> {
        if !super::clusters::exists(conn, cluster)? {
            return Ok(false);
        }
        let current = read(conn, cluster, &self.component)?;
        let target = target(current.as_ref())?;
        if target == current {
            return Ok(true);
        }
        let stored = store(
            conn,
            cluster,
            &self.component,
            current.as_ref(),
            target.as_ref(),
        )?;
        // A cluster set twice in one write keeps its first state before.
        match self.changed.get_mut(cluster) {
            Some((_, after)) => *after = stored,
            None => {
                self.changed.insert(cluster.to_owned(), (current, stored));
            }
        }
        Ok(true)
    }

    pub fn is_empty(&self) -> bool {
        self.changed.is_empty()
    }

    pub fn finish(self) -> Written {
        let json = |listed: &Option<Listed>| {
            listed.as_ref().map_or(Value::Null, |l| {
                serde_json::to_value(l).unwrap_or(Value::Null)
            })
        };
        let (mut before, mut after) = (Map::new(), Map::new());
        let mut clusters = Vec::with_capacity(self.changed.len());
        for (cluster, (was, is)) in self.changed {
            before.insert(cluster.clone(), json(&was));
            after.insert(cluster.clone(), json(&is));
            clusters.push((cluster, was.filter(|_| is.is_none())));
        }
        Written {
            component: self.component,
            before: Value::Object(before),
            after: Value::Object(after),
            clusters,
        }
    }
}

/// The entries an audit entry of kind `cluster_components` holds on one side, by cluster.
pub fn parse_side(side: Option<&Value>) -> Result<Vec<(String, Option<Listed>)>> {
    let Some(Value::Object(entries)) = side else {
        return Err(AppError::Internal(
            "an audit entry of kind cluster_components holds no entries".into(),
        ));
    };
    entries
        .iter()
        .map(|(cluster, listed)| {
            let listed = match listed {
                Value::Null => None,
                other => Some(serde_json::from_value(other.clone()).map_err(|err| {
                    AppError::Internal(format!(
                        "an audit entry holds an unreadable entry of cluster '{cluster}': {err}"
                    ))
                })?),
            };
            Ok((cluster.clone(), listed))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn database() -> Connection {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("PRAGMA foreign_keys = ON").unwrap();
        crate::store::migrate::migrate(&mut conn, |_| Ok(())).unwrap();
        conn.execute_batch(
            "INSERT INTO platform_components (id, component_path, component_version, oci_url, oci_tag) \
                 VALUES ('a', 'p', '1', 'oci://x', '1'), ('b', 'p', '1', 'oci://x', '1'), ('c', 'p', '1', 'oci://x', '1');
             INSERT INTO clusters (id, cluster_name, cluster_dns, environment) VALUES ('k', 'k', 'k.example', 'dev');
             INSERT INTO cluster_components (cluster_id, component_id, position, enabled, oci_tag) \
                 VALUES ('k', 'a', 0, 1, NULL), ('k', 'b', 1, 1, 'v2');
             INSERT INTO cluster_patches (cluster_id, component_id, patch) VALUES ('k', 'b', '{\"x\":1}');",
        )
        .unwrap();
        conn
    }

    fn order(conn: &Connection) -> Vec<String> {
        let mut stmt = conn
            .prepare("SELECT component_id FROM cluster_components WHERE cluster_id = 'k' ORDER BY position")
            .unwrap();
        stmt.query_map([], |row| row.get(0))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap()
    }

    #[test]
    fn a_removed_entry_comes_back_where_it_was_with_its_patch() {
        let conn = database();
        let before = read(&conn, "k", "b").unwrap();
        let mut write = ComponentWrite::new("b");
        assert!(write.set(&conn, "k", |_| Ok(None)).unwrap());
        assert_eq!(read(&conn, "k", "b").unwrap(), None);
        let written = write.finish();
        assert_eq!(written.clusters[0].1, before, "what it removed");
        let mut undo = ComponentWrite::new("b");
        let back = parse_side(Some(&written.before)).unwrap().remove(0).1;
        undo.set(&conn, "k", |_| Ok(back)).unwrap();
        assert_eq!(read(&conn, "k", "b").unwrap(), before);
        assert_eq!(order(&conn), ["a", "b"]);
    }

    #[test]
    fn an_entry_whose_place_was_taken_goes_to_the_end() {
        let conn = database();
        let mut write = ComponentWrite::new("a");
        write.set(&conn, "k", |_| Ok(None)).unwrap();
        conn.execute_batch(
            "INSERT INTO cluster_components (cluster_id, component_id, position, enabled) VALUES ('k', 'c', 0, 1)",
        )
        .unwrap();
        let back = parse_side(Some(&write.finish().before))
            .unwrap()
            .remove(0)
            .1;
        ComponentWrite::new("a")
            .set(&conn, "k", |_| Ok(back))
            .unwrap();
        assert_eq!(order(&conn), ["c", "b", "a"]);
    }

    #[test]
    fn a_value_change_keeps_the_patch_and_records_both_sides() {
        let conn = database();
        let mut write = ComponentWrite::new("b");
        write
            .set(&conn, "k", |current| {
                Ok(current.map(|c| Listed {
                    oci_tag: Some("v3".into()),
                    ..c.clone()
                }))
            })
            .unwrap();
        // Unchanged, and a cluster that does not exist: nothing recorded.
        write
            .set(&conn, "k", |current| Ok(current.cloned()))
            .unwrap();
        assert!(!write.set(&conn, "gone", |_| Ok(None)).unwrap());
        let stored = read(&conn, "k", "b").unwrap().unwrap();
        assert_eq!(stored.oci_tag.as_deref(), Some("v3"));
        assert_eq!(stored.patch, Some(serde_json::json!({"x": 1})));
        let written = write.finish();
        assert_eq!(written.component, "b");
        assert_eq!(written.before["k"]["oci_tag"], "v2");
        assert_eq!(written.after["k"]["oci_tag"], "v3");
        assert_eq!(
            written.clusters,
            [("k".to_owned(), None)],
            "changed, nothing removed"
        );
    }
}
