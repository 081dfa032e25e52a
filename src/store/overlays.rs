//! Overlays in SQLite: the overlay row, its selector labels, component entries, patches,
//! namespaces and rolebindings; and which clusters a selector matches.

use std::collections::BTreeMap;

use rusqlite::{Connection, OptionalExtension, params};

use super::sql::{Page, SqlResultExt, exists, missing_ids};
use crate::domain::model::Environment;
use crate::domain::overlay::{
    self, EffectiveCluster, EffectiveComponentView, EffectiveRef, LayeredValue, Overlay,
    OverlayComponent, Selector,
};
use crate::domain::validate::quoted_list;
use crate::error::{AppError, Result};

/// SQL: overlay `o` matches cluster `c` (its environment, every label of its selector).
pub const MATCHES_CLUSTER_C: &str = "(o.environment IS NULL OR o.environment = c.environment) \
     AND NOT EXISTS (SELECT 1 FROM overlay_labels ol WHERE ol.overlay_id = o.id AND NOT EXISTS \
     (SELECT 1 FROM cluster_labels cl WHERE cl.cluster_id = c.id AND cl.key = ol.key \
     AND cl.value = ol.value))";

fn load(conn: &Connection, id: String) -> Result<Option<Overlay>> {
    let head = conn
        .prepare_cached("SELECT description, environment, priority FROM overlays WHERE id = ?1")
        .db()?
        .query_row([&id], |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, Option<String>>(1)?,
                row.get::<_, i64>(2)?,
            ))
        })
        .optional()
        .db()?;
    let Some((description, environment, priority)) = head else {
        return Ok(None);
    };
    let labels: BTreeMap<String, String> = conn
        .prepare_cached("SELECT key, value FROM overlay_labels WHERE overlay_id = ?1")
        .db()?
        .query_map([&id], |row| Ok((row.get(0)?, row.get(1)?)))
        .db()?
        .collect::<rusqlite::Result<_>>()
        .db()?;
    let platform_components = conn
        .prepare_cached(
            "SELECT component_id, enabled, oci_tag, component_path FROM overlay_components \
             WHERE overlay_id = ?1 ORDER BY position",
        )
        .db()?
        .query_map([&id], |row| {
            Ok(OverlayComponent {
                id: row.get(0)?,
                enabled: row.get(1)?,
                oci_tag: row.get(2)?,
                component_path: row.get(3)?,
            })
        })
        .db()?
        .collect::<rusqlite::Result<_>>()
        .db()?;
    let mut patches = BTreeMap::new();
    let mut stmt = conn
        .prepare_cached("SELECT component_id, patch FROM overlay_patches WHERE overlay_id = ?1")
        .db()?;
    let mut rows = stmt.query([&id]).db()?;
    while let Some(row) = rows.next().db()? {
        let component: String = row.get(0).db()?;
        let text: String = row.get(1).db()?;
        let patch = serde_json::from_str(&text)
            .map_err(|err| AppError::Internal(format!("overlay '{id}': patch: {err}")))?;
        patches.insert(component, patch);
    }
    let ids = |sql: &str| -> Result<Vec<String>> {
        conn.prepare_cached(sql)
            .db()?
            .query_map([&id], |row| row.get(0))
            .db()?
            .collect::<rusqlite::Result<_>>()
            .db()
    };
    let namespaces =
        ids("SELECT namespace_id FROM overlay_namespaces WHERE overlay_id = ?1 ORDER BY position")?;
    let rolebindings = ids(
        "SELECT rolebinding_id FROM overlay_rolebindings WHERE overlay_id = ?1 ORDER BY position",
    )?;
    Ok(Some(Overlay {
        selector: Selector {
            environment: environment.as_deref().and_then(Environment::parse),
            labels,
        },
        id,
        description,
        priority,
        platform_components,
        patches,
        namespaces,
        rolebindings,
    }))
}

pub fn get(conn: &Connection, id: &str) -> Result<Option<Overlay>> {
    load(conn, id.to_owned())
}

pub fn list(conn: &Connection, page: Page) -> Result<Vec<Overlay>> {
    let ids: Vec<String> = conn
        .prepare_cached("SELECT id FROM overlays ORDER BY id LIMIT ?1 OFFSET ?2")
        .db()?
        .query_map(params![page.sql_limit(), page.sql_offset()], |row| {
            row.get(0)
        })
        .db()?
        .collect::<rusqlite::Result<_>>()
        .db()?;
    let mut overlays = Vec::with_capacity(ids.len());
    for id in ids {
        overlays.extend(load(conn, id)?);
    }
    Ok(overlays)
}

/// Every overlay (the feed encoder layers them over the catalog).
pub fn all(conn: &Connection) -> Result<Vec<Overlay>> {
    list(conn, Page::default())
}

/// Unknown references are a 422 naming them (the foreign keys are the backstop).
fn check_references(conn: &Connection, overlay: &Overlay) -> Result<()> {
    let components = overlay
        .platform_components
        .iter()
        .map(|c| c.id.as_str())
        .chain(overlay.patches.keys().map(String::as_str));
    let mut problems = Vec::new();
    for (kind, missing) in [
        (
            "platform component(s)",
            missing_ids(conn, "platform_components", components)?,
        ),
        (
            "namespace(s)",
            missing_ids(
                conn,
                "namespaces",
                overlay.namespaces.iter().map(String::as_str),
            )?,
        ),
        (
            "rolebinding(s)",
            missing_ids(
                conn,
                "rolebindings",
                overlay.rolebindings.iter().map(String::as_str),
            )?,
        ),
    ] {
        if !missing.is_empty() {
            problems.push(format!("unknown {kind} {}", quoted_list(&missing)));
        }
    }
    if problems.is_empty() {
        return Ok(());
    }
    Err(AppError::Validation(format!(
        "overlay '{}' references {}",
        overlay.id,
        problems.join("; ")
    )))
}

fn write_children(conn: &Connection, overlay: &Overlay) -> Result<()> {
    let id = &overlay.id;
    for table in [
        "overlay_labels",
        "overlay_components",
        "overlay_patches",
        "overlay_namespaces",
        "overlay_rolebindings",
    ] {
        conn.prepare_cached(&format!("DELETE FROM {table} WHERE overlay_id = ?1"))
            .db()?
            .execute([id])
            .db()?;
    }
    for (key, value) in &overlay.selector.labels {
        conn.prepare_cached(
            "INSERT INTO overlay_labels (overlay_id, key, value) VALUES (?1, ?2, ?3)",
        )
        .db()?
        .execute(params![id, key, value])
        .db()?;
    }
    for (position, entry) in overlay.platform_components.iter().enumerate() {
        conn.prepare_cached(
            "INSERT INTO overlay_components (overlay_id, component_id, position, enabled, oci_tag, \
             component_path) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )
        .db()?
        .execute(params![
            id,
            entry.id,
            position as i64,
            entry.enabled,
            entry.oci_tag,
            entry.component_path
        ])
        .db()?;
    }
    for (component, patch) in &overlay.patches {
        let text = serde_json::to_string(patch)
            .map_err(|err| AppError::Internal(format!("cannot encode a patch: {err}")))?;
        conn.prepare_cached(
            "INSERT INTO overlay_patches (overlay_id, component_id, patch) VALUES (?1, ?2, ?3)",
        )
        .db()?
        .execute(params![id, component, text])
        .db()?;
    }
    for (table, column, ids) in [
        ("overlay_namespaces", "namespace_id", &overlay.namespaces),
        (
            "overlay_rolebindings",
            "rolebinding_id",
            &overlay.rolebindings,
        ),
    ] {
        for (position, reference) in ids.iter().enumerate() {
            conn.prepare_cached(&format!(
                "INSERT INTO {table} (overlay_id, {column}, position) VALUES (?1, ?2, ?3)"
            ))
            .db()?
            .execute(params![id, reference, position as i64])
            .db()?;
        }
    }
    Ok(())
}

pub fn insert(conn: &Connection, overlay: &Overlay) -> Result<()> {
    if exists(conn, "overlays", &overlay.id)? {
        return Err(AppError::Conflict(format!(
            "overlay '{}' already exists",
            overlay.id
        )));
    }
    check_references(conn, overlay)?;
    conn.prepare_cached(
        "INSERT INTO overlays (id, description, environment, priority) VALUES (?1, ?2, ?3, ?4)",
    )
    .db()?
    .execute(params![
        overlay.id,
        overlay.description,
        overlay.selector.environment.map(Environment::as_str),
        overlay.priority
    ])
    .db()?;
    write_children(conn, overlay)
}

pub fn update(conn: &Connection, overlay: &Overlay) -> Result<()> {
    check_references(conn, overlay)?;
    conn.prepare_cached(
        "UPDATE overlays SET description = ?2, environment = ?3, priority = ?4 WHERE id = ?1",
    )
    .db()?
    .execute(params![
        overlay.id,
        overlay.description,
        overlay.selector.environment.map(Environment::as_str),
        overlay.priority
    ])
    .db()?;
    write_children(conn, overlay)
}

pub fn delete(conn: &Connection, id: &str) -> Result<Overlay> {
    let overlay =
        get(conn, id)?.ok_or_else(|| AppError::NotFound(format!("overlay '{id}' not found")))?;
    conn.prepare_cached("DELETE FROM overlays WHERE id = ?1")
        .db()?
        .execute([id])
        .db()?;
    Ok(overlay)
}

/// Clusters `selector` matches: `c` in `FROM clusters c WHERE …`, `?1` environment, `?2`
/// labels as a JSON object.
const SELECTED: &str = "(?1 IS NULL OR c.environment = ?1) \
     AND NOT EXISTS (SELECT 1 FROM json_each(?2) want WHERE NOT EXISTS \
       (SELECT 1 FROM cluster_labels l WHERE l.cluster_id = c.id AND l.key = want.key \
        AND l.value = want.value))";

fn selector_params(selector: &Selector) -> Result<(Option<&'static str>, String)> {
    let labels = serde_json::to_string(&selector.labels)
        .map_err(|err| AppError::Internal(format!("cannot encode labels: {err}")))?;
    Ok((selector.environment.map(Environment::as_str), labels))
}

/// Ids of the clusters `selector` matches, in id order; at most `limit` of them.
pub fn matching_clusters_limited(
    conn: &Connection,
    selector: &Selector,
    limit: Option<u32>,
) -> Result<Vec<String>> {
    let (environment, labels) = selector_params(selector)?;
    conn.prepare_cached(&format!(
        "SELECT c.id FROM clusters c WHERE {SELECTED} ORDER BY c.id LIMIT ?3"
    ))
    .db()?
    .query_map(
        params![environment, labels, limit.map_or(-1, i64::from)],
        |row| row.get(0),
    )
    .db()?
    .collect::<rusqlite::Result<_>>()
    .db()
}

/// Ids of the clusters `selector` matches, in id order.
pub fn matching_clusters(conn: &Connection, selector: &Selector) -> Result<Vec<String>> {
    matching_clusters_limited(conn, selector, None)
}

/// How many clusters `selector` matches.
pub fn count_matching(conn: &Connection, selector: &Selector) -> Result<u64> {
    let (environment, labels) = selector_params(selector)?;
    conn.prepare_cached(&format!("SELECT count(*) FROM clusters c WHERE {SELECTED}"))
        .db()?
        .query_row(params![environment, labels], |row| row.get::<_, i64>(0))
        .db()
        .map(|n| n as u64)
}

/// Ids of the clusters matched by an overlay that assigns `id` through `table` (a row
/// `column = id`; for components, an entry that sets `enabled`), in id order. An overlay entry
/// that only sets values reaches no cluster the component is not assigned to already.
pub fn clusters_assigned_through(
    conn: &Connection,
    table: &str,
    column: &str,
    id: &str,
) -> Result<Vec<String>> {
    let assigns = if table == "overlay_components" {
        " AND x.enabled IS NOT NULL"
    } else {
        ""
    };
    conn.prepare_cached(&format!(
        "SELECT c.id FROM clusters c WHERE EXISTS (SELECT 1 FROM {table} x \
         JOIN overlays o ON o.id = x.overlay_id WHERE x.{column} = ?1{assigns} \
         AND {MATCHES_CLUSTER_C}) ORDER BY c.id"
    ))
    .db()?
    .query_map([id], |row| row.get(0))
    .db()?
    .collect::<rusqlite::Result<_>>()
    .db()
}

/// Ids of the overlays that reference a definition (a delete of it is refused).
pub fn referrers(conn: &Connection, table: &str, column: &str, id: &str) -> Result<Vec<String>> {
    conn.prepare_cached(&format!(
        "SELECT DISTINCT overlay_id FROM {table} WHERE {column} = ?1 ORDER BY overlay_id"
    ))
    .db()?
    .query_map([id], |row| row.get(0))
    .db()?
    .collect::<rusqlite::Result<_>>()
    .db()
}

/// The effective values of one cluster, read in one transaction.
pub fn effective_view(conn: &Connection, id: &str) -> Result<EffectiveCluster> {
    let cluster = super::clusters::get(conn, id)?
        .ok_or_else(|| crate::error::AppError::NotFound(format!("cluster '{id}' not found")))?;
    let all = all(conn)?;
    let found = overlay::matching(&all, cluster.environment, &cluster.labels);
    let layers = overlay::effective(&cluster, &found);
    let catalog =
        super::components::get_many(conn, layers.components.iter().map(|c| c.id.as_str()))?;
    let text =
        |v: &Option<String>, from: &overlay::Layer, catalog_value: Option<&str>| LayeredValue {
            value: v
                .as_deref()
                .or(catalog_value)
                .map_or(serde_json::Value::Null, |t| {
                    serde_json::Value::String(t.into())
                }),
            from: from.name(),
        };
    let platform_components = layers
        .components
        .iter()
        .map(|c| {
            let entry = catalog.get(&c.id);
            EffectiveComponentView {
                id: c.id.clone(),
                enabled: LayeredValue {
                    value: serde_json::Value::Bool(c.enabled.0),
                    from: c.enabled.1.name(),
                },
                oci_tag: text(
                    &c.oci_tag.0,
                    &c.oci_tag.1,
                    entry.map(|e| e.oci_tag.as_str()),
                ),
                component_path: text(
                    &c.component_path.0,
                    &c.component_path.1,
                    entry.map(|e| e.component_path.as_str()),
                ),
                patches: c
                    .patch
                    .iter()
                    .map(|(key, (value, from))| {
                        (
                            key.clone(),
                            LayeredValue {
                                value: value.clone(),
                                from: from.name(),
                            },
                        )
                    })
                    .collect(),
            }
        })
        .collect();
    let refs = |list: &[(String, overlay::Layer)]| {
        list.iter()
            .map(|(id, from)| EffectiveRef {
                id: id.clone(),
                from: from.name(),
            })
            .collect()
    };
    Ok(EffectiveCluster {
        id: cluster.id.clone(),
        overlays: found.iter().map(|o| o.id.clone()).collect(),
        platform_components,
        namespaces: refs(&layers.namespaces),
        rolebindings: refs(&layers.rolebindings),
    })
}
