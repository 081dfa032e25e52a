//! The platform component catalog and its dependency edges.

use std::collections::HashMap;

use rusqlite::{Connection, Row, params};

use super::sql::{Page, SqlResultExt, exists, missing_ids, query_ids};
use crate::domain::model::PlatformComponent;
use crate::domain::validate::quoted_list;
use crate::error::{AppError, Result};

const SELECT: &str = "SELECT id, component_path, component_version, oci_url, oci_tag, \
                      cluster_env_enabled FROM platform_components";

fn from_row(row: &Row) -> rusqlite::Result<PlatformComponent> {
    Ok(PlatformComponent {
        id: row.get(0)?,
        component_path: row.get(1)?,
        component_version: row.get(2)?,
        oci_url: row.get(3)?,
        oci_tag: row.get(4)?,
        cluster_env_enabled: row.get(5)?,
        depends_on: Vec::new(),
    })
}

fn with_dependencies(
    conn: &Connection,
    mut component: PlatformComponent,
) -> Result<PlatformComponent> {
    component.depends_on = query_ids(
        conn,
        "SELECT depends_on_id FROM component_dependencies WHERE component_id = ?1 ORDER BY position",
        &component.id,
    )?;
    Ok(component)
}

pub fn get(conn: &Connection, id: &str) -> Result<Option<PlatformComponent>> {
    let mut stmt = conn
        .prepare_cached(&format!("{SELECT} WHERE id = ?1"))
        .db()?;
    let mut rows = stmt.query_map([id], from_row).db()?;
    match rows.next().transpose().db()? {
        Some(component) => Ok(Some(with_dependencies(conn, component)?)),
        None => Ok(None),
    }
}

pub fn list(
    conn: &Connection,
    component_version: Option<&str>,
    page: Page,
) -> Result<Vec<PlatformComponent>> {
    let mut stmt = conn
        .prepare_cached(&format!(
            "{SELECT} WHERE (?1 IS NULL OR component_version = ?1) ORDER BY id LIMIT ?2 OFFSET ?3"
        ))
        .db()?;
    let rows = stmt
        .query_map(
            params![component_version, page.sql_limit(), page.sql_offset()],
            from_row,
        )
        .db()?;
    let components = rows.collect::<rusqlite::Result<Vec<_>>>().db()?;
    components
        .into_iter()
        .map(|c| with_dependencies(conn, c))
        .collect()
}

/// The catalog entries with these ids, keyed by id (for the merge).
pub fn get_many<'a>(
    conn: &Connection,
    ids: impl IntoIterator<Item = &'a str>,
) -> Result<HashMap<String, PlatformComponent>> {
    let mut found = HashMap::new();
    for id in ids {
        if let Some(component) = get(conn, id)? {
            found.insert(component.id.clone(), component);
        }
    }
    Ok(found)
}

pub fn insert(conn: &Connection, component: &PlatformComponent) -> Result<()> {
    insert_row(conn, component)?;
    set_dependencies(conn, &component.id, &component.depends_on)
}

/// Inserts the catalog row alone; the seed loader adds every row before any edge.
pub fn insert_row(conn: &Connection, component: &PlatformComponent) -> Result<()> {
    if exists(conn, "platform_components", &component.id)? {
        return Err(AppError::Conflict(format!(
            "platform component '{}' already exists",
            component.id
        )));
    }
    conn.prepare_cached(
        "INSERT INTO platform_components (id, component_path, component_version, oci_url, oci_tag, \
         cluster_env_enabled) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )
    .db()?
    .execute(params![
        component.id,
        component.component_path,
        component.component_version,
        component.oci_url,
        component.oci_tag,
        component.cluster_env_enabled
    ])
    .db()?;
    Ok(())
}

pub fn update(conn: &Connection, component: &PlatformComponent) -> Result<()> {
    update_row(conn, component)?;
    set_dependencies(conn, &component.id, &component.depends_on)
}

/// Updates the catalog row alone (see `insert_row`).
pub fn update_row(conn: &Connection, component: &PlatformComponent) -> Result<()> {
    conn.prepare_cached(
        "UPDATE platform_components SET component_path = ?2, component_version = ?3, oci_url = ?4, \
         oci_tag = ?5, cluster_env_enabled = ?6 WHERE id = ?1",
    )
    .db()?
    .execute(params![
        component.id,
        component.component_path,
        component.component_version,
        component.oci_url,
        component.oci_tag,
        component.cluster_env_enabled
    ])
    .db()?;
    Ok(())
}

/// Replaces the component's `depends_on` edges, refusing unknown ids and cycles.
pub fn set_dependencies(conn: &Connection, id: &str, depends_on: &[String]) -> Result<()> {
    let unknown = missing_ids(
        conn,
        "platform_components",
        depends_on.iter().map(String::as_str),
    )?;
    if !unknown.is_empty() {
        return Err(AppError::Validation(format!(
            "depends_on: unknown platform component(s) {}",
            quoted_list(&unknown)
        )));
    }
    conn.prepare_cached("DELETE FROM component_dependencies WHERE component_id = ?1")
        .db()?
        .execute([id])
        .db()?;
    let mut insert = conn
        .prepare_cached(
            "INSERT INTO component_dependencies (component_id, depends_on_id, position) VALUES (?1, ?2, ?3)",
        )
        .db()?;
    for (position, target) in depends_on.iter().enumerate() {
        insert.execute(params![id, target, position as i64]).db()?;
    }
    if let Some(cycle) = find_cycle_through(conn, id)? {
        return Err(AppError::Validation(format!(
            "depends_on: dependency cycle {}",
            cycle.join(" -> ")
        )));
    }
    Ok(())
}

/// A dependency path from `start` back to itself, if the edges now close one.
fn find_cycle_through(conn: &Connection, start: &str) -> Result<Option<Vec<String>>> {
    let mut stmt = conn
        .prepare_cached("SELECT component_id, depends_on_id FROM component_dependencies ORDER BY component_id, position")
        .db()?;
    let mut edges: HashMap<String, Vec<String>> = HashMap::new();
    let rows = stmt
        .query_map([], |row| {
            Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?))
        })
        .db()?;
    for row in rows {
        let (from, to) = row.db()?;
        edges.entry(from).or_default().push(to);
    }
    // Depth-first search keeping the current path; `done` holds nodes proven cycle-free.
    let mut path = vec![start.to_owned()];
    let mut done = std::collections::HashSet::new();
    fn visit(
        node: &str,
        start: &str,
        edges: &HashMap<String, Vec<String>>,
        path: &mut Vec<String>,
        done: &mut std::collections::HashSet<String>,
    ) -> bool {
        for next in edges.get(node).into_iter().flatten() {
            if next == start {
                path.push(next.clone());
                return true;
            }
            if done.contains(next) || path.contains(next) {
                continue;
            }
            path.push(next.clone());
            if visit(next, start, edges, path, done) {
                return true;
            }
            path.pop();
            done.insert(next.clone());
        }
        false
    }
    Ok(visit(start, start, &edges, &mut path, &mut done).then_some(path))
}

/// Deletes a catalog entry nobody uses; `409` names every cluster and component still using it.
pub fn delete(conn: &Connection, id: &str) -> Result<PlatformComponent> {
    let component = get(conn, id)?
        .ok_or_else(|| AppError::NotFound(format!("platform component '{id}' not found")))?;
    let clusters = query_ids(
        conn,
        "SELECT cluster_id FROM cluster_components WHERE component_id = ?1 ORDER BY cluster_id",
        id,
    )?;
    let dependents = query_ids(
        conn,
        "SELECT component_id FROM component_dependencies WHERE depends_on_id = ?1 ORDER BY component_id",
        id,
    )?;
    let mut referrers = Vec::new();
    if !clusters.is_empty() {
        referrers.push(format!("cluster(s) {}", quoted_list(&clusters)));
    }
    if !dependents.is_empty() {
        referrers.push(format!(
            "the depends_on of component(s) {}",
            quoted_list(&dependents)
        ));
    }
    let mut overlays = super::overlays::referrers(conn, "overlay_components", "component_id", id)?;
    overlays.extend(super::overlays::referrers(
        conn,
        "overlay_patches",
        "component_id",
        id,
    )?);
    overlays.sort();
    overlays.dedup();
    if !overlays.is_empty() {
        referrers.push(format!("overlay(s) {}", quoted_list(&overlays)));
    }
    if !referrers.is_empty() {
        return Err(AppError::Conflict(format!(
            "platform component '{id}' is still referenced by {}",
            referrers.join(" and ")
        )));
    }
    conn.prepare_cached("DELETE FROM platform_components WHERE id = ?1")
        .db()?
        .execute([id])
        .db()?;
    Ok(component)
}
