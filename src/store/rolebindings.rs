//! Rolebinding definitions with their ordered subjects.

use std::collections::HashMap;

use rusqlite::{Connection, Row, params};

use super::sql::{Page, SqlResultExt, exists, query_ids, referrers_conflict};
use crate::domain::model::{Rolebinding, Subject, SubjectKind};
use crate::error::{AppError, Result};

fn subject_from_row(row: &Row) -> rusqlite::Result<Subject> {
    let kind: String = row.get(0)?;
    Ok(Subject {
        // The CHECK constraint admits only the three kinds.
        kind: SubjectKind::parse(&kind).unwrap_or(SubjectKind::User),
        name: row.get(1)?,
        api_group: row.get(2)?,
        namespace: row.get(3)?,
    })
}

fn load(conn: &Connection, id: String, role: String) -> Result<Rolebinding> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT kind, name, api_group, namespace FROM rolebinding_subjects \
             WHERE rolebinding_id = ?1 ORDER BY position",
        )
        .db()?;
    let subjects = stmt
        .query_map([&id], subject_from_row)
        .db()?
        .collect::<rusqlite::Result<Vec<_>>>()
        .db()?;
    Ok(Rolebinding { id, role, subjects })
}

pub fn get(conn: &Connection, id: &str) -> Result<Option<Rolebinding>> {
    let mut stmt = conn
        .prepare_cached("SELECT role FROM rolebindings WHERE id = ?1")
        .db()?;
    let role: Option<String> = stmt
        .query_map([id], |row| row.get(0))
        .db()?
        .next()
        .transpose()
        .db()?;
    role.map(|role| load(conn, id.to_owned(), role)).transpose()
}

pub fn list(conn: &Connection, page: Page) -> Result<Vec<Rolebinding>> {
    let mut stmt = conn
        .prepare_cached("SELECT id, role FROM rolebindings ORDER BY id LIMIT ?1 OFFSET ?2")
        .db()?;
    let rows = stmt
        .query_map(params![page.sql_limit(), page.sql_offset()], |row| {
            Ok((row.get(0)?, row.get(1)?))
        })
        .db()?
        .collect::<rusqlite::Result<Vec<(String, String)>>>()
        .db()?;
    rows.into_iter()
        .map(|(id, role)| load(conn, id, role))
        .collect()
}

pub fn get_many<'a>(
    conn: &Connection,
    ids: impl IntoIterator<Item = &'a str>,
) -> Result<HashMap<String, Rolebinding>> {
    let mut found = HashMap::new();
    for id in ids {
        if let Some(rolebinding) = get(conn, id)? {
            found.insert(rolebinding.id.clone(), rolebinding);
        }
    }
    Ok(found)
}

pub fn insert(conn: &Connection, rolebinding: &Rolebinding) -> Result<()> {
    if exists(conn, "rolebindings", &rolebinding.id)? {
        return Err(AppError::Conflict(format!(
            "rolebinding '{}' already exists",
            rolebinding.id
        )));
    }
    conn.prepare_cached("INSERT INTO rolebindings (id, role) VALUES (?1, ?2)")
        .db()?
        .execute(params![rolebinding.id, rolebinding.role])
        .db()?;
    write_subjects(conn, rolebinding)
}

pub fn update(conn: &Connection, rolebinding: &Rolebinding) -> Result<()> {
    conn.prepare_cached("UPDATE rolebindings SET role = ?2 WHERE id = ?1")
        .db()?
        .execute(params![rolebinding.id, rolebinding.role])
        .db()?;
    conn.prepare_cached("DELETE FROM rolebinding_subjects WHERE rolebinding_id = ?1")
        .db()?
        .execute([&rolebinding.id])
        .db()?;
    write_subjects(conn, rolebinding)
}

fn write_subjects(conn: &Connection, rolebinding: &Rolebinding) -> Result<()> {
    let mut insert = conn
        .prepare_cached(
            "INSERT INTO rolebinding_subjects (rolebinding_id, position, kind, name, api_group, namespace) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )
        .db()?;
    for (position, subject) in rolebinding.subjects.iter().enumerate() {
        insert
            .execute(params![
                rolebinding.id,
                position as i64,
                subject.kind.as_str(),
                subject.name,
                subject.api_group,
                subject.namespace
            ])
            .db()?;
    }
    Ok(())
}

pub fn delete(conn: &Connection, id: &str) -> Result<Rolebinding> {
    let rolebinding = get(conn, id)?
        .ok_or_else(|| AppError::NotFound(format!("rolebinding '{id}' not found")))?;
    let clusters = query_ids(
        conn,
        "SELECT cluster_id FROM cluster_rolebindings WHERE rolebinding_id = ?1 ORDER BY cluster_id",
        id,
    )?;
    referrers_conflict("rolebinding", id, &clusters)?;
    let overlays = super::overlays::referrers(conn, "overlay_rolebindings", "rolebinding_id", id)?;
    if !overlays.is_empty() {
        return Err(AppError::Conflict(format!(
            "rolebinding '{id}' is still referenced by overlay(s) {}",
            crate::domain::validate::quoted_list(&overlays)
        )));
    }
    conn.prepare_cached("DELETE FROM rolebindings WHERE id = ?1")
        .db()?
        .execute([id])
        .db()?;
    Ok(rolebinding)
}
