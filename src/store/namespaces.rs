//! Namespace definitions with their labels and annotations.

use std::collections::{BTreeMap, HashMap};

use rusqlite::{Connection, params};

use super::sql::{Page, SqlResultExt, exists, query_ids, referrers_conflict};
use crate::domain::model::Namespace;
use crate::error::{AppError, Result};

fn load(conn: &Connection, id: String) -> Result<Namespace> {
    let mut stmt = conn
        .prepare_cached("SELECT kind, key, value FROM namespace_metadata WHERE namespace_id = ?1")
        .db()?;
    let rows = stmt
        .query_map([&id], |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, String>(2)?,
            ))
        })
        .db()?;
    let (mut labels, mut annotations) = (BTreeMap::new(), BTreeMap::new());
    for row in rows {
        let (kind, key, value) = row.db()?;
        let map = if kind == "label" {
            &mut labels
        } else {
            &mut annotations
        };
        map.insert(key, value);
    }
    Ok(Namespace {
        id,
        labels,
        annotations,
    })
}

pub fn get(conn: &Connection, id: &str) -> Result<Option<Namespace>> {
    if !exists(conn, "namespaces", id)? {
        return Ok(None);
    }
    load(conn, id.to_owned()).map(Some)
}

pub fn list(conn: &Connection, page: Page) -> Result<Vec<Namespace>> {
    let mut stmt = conn
        .prepare_cached("SELECT id FROM namespaces ORDER BY id LIMIT ?1 OFFSET ?2")
        .db()?;
    let ids = stmt
        .query_map(params![page.sql_limit(), page.sql_offset()], |row| {
            row.get(0)
        })
        .db()?
        .collect::<rusqlite::Result<Vec<String>>>()
        .db()?;
    ids.into_iter().map(|id| load(conn, id)).collect()
}

pub fn get_many<'a>(
    conn: &Connection,
    ids: impl IntoIterator<Item = &'a str>,
) -> Result<HashMap<String, Namespace>> {
    let mut found = HashMap::new();
    for id in ids {
        if let Some(namespace) = get(conn, id)? {
            found.insert(namespace.id.clone(), namespace);
        }
    }
    Ok(found)
}

pub fn insert(conn: &Connection, namespace: &Namespace) -> Result<()> {
    if exists(conn, "namespaces", &namespace.id)? {
        return Err(AppError::Conflict(format!(
            "namespace '{}' already exists",
            namespace.id
        )));
    }
    conn.prepare_cached("INSERT INTO namespaces (id) VALUES (?1)")
        .db()?
        .execute([&namespace.id])
        .db()?;
    write_metadata(conn, namespace)
}

pub fn update(conn: &Connection, namespace: &Namespace) -> Result<()> {
    conn.prepare_cached("DELETE FROM namespace_metadata WHERE namespace_id = ?1")
        .db()?
        .execute([&namespace.id])
        .db()?;
    write_metadata(conn, namespace)
}

fn write_metadata(conn: &Connection, namespace: &Namespace) -> Result<()> {
    let mut insert = conn
        .prepare_cached("INSERT INTO namespace_metadata (namespace_id, kind, key, value) VALUES (?1, ?2, ?3, ?4)")
        .db()?;
    for (kind, map) in [
        ("label", &namespace.labels),
        ("annotation", &namespace.annotations),
    ] {
        for (key, value) in map {
            insert
                .execute(params![namespace.id, kind, key, value])
                .db()?;
        }
    }
    Ok(())
}

pub fn delete(conn: &Connection, id: &str) -> Result<Namespace> {
    let namespace =
        get(conn, id)?.ok_or_else(|| AppError::NotFound(format!("namespace '{id}' not found")))?;
    let clusters = query_ids(
        conn,
        "SELECT cluster_id FROM cluster_namespaces WHERE namespace_id = ?1 ORDER BY cluster_id",
        id,
    )?;
    referrers_conflict("namespace", id, &clusters)?;
    let overlays = super::overlays::referrers(conn, "overlay_namespaces", "namespace_id", id)?;
    if !overlays.is_empty() {
        return Err(AppError::Conflict(format!(
            "namespace '{id}' is still referenced by overlay(s) {}",
            crate::domain::validate::quoted_list(&overlays)
        )));
    }
    conn.prepare_cached("DELETE FROM namespaces WHERE id = ?1")
        .db()?
        .execute([id])
        .db()?;
    Ok(namespace)
}
