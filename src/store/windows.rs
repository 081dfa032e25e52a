//! Maintenance windows in SQLite, and which clusters they close at an instant. Whether a
//! schedule is open is `domain::window`'s; which clusters a selector matches is the overlays'
//! SQL, shared.

use std::collections::{BTreeMap, HashMap, HashSet};

use rusqlite::{Connection, OptionalExtension, params};

use super::overlays;
use super::sql::{Page, SqlResultExt, exists};
use crate::domain::model::Environment;
use crate::domain::overlay::Selector;
use crate::domain::window::{
    self, Absolute, Applying, ClusterWindows, Recurrence, Window, WindowKind,
};
use crate::error::{AppError, Result};

const SELECT: &str = "SELECT id, description, kind, environment, labels, days, start, \
     duration_minutes, time_zone, absolute_from, absolute_to FROM windows";

fn from_row(row: &rusqlite::Row) -> rusqlite::Result<Window> {
    let kind: String = row.get(2)?;
    let environment: Option<String> = row.get(3)?;
    let labels: String = row.get(4)?;
    let days: Option<String> = row.get(5)?;
    let recurrence = match days {
        Some(days) => Some(Recurrence {
            days: days.split(',').map(str::to_owned).collect(),
            start: row.get::<_, Option<String>>(6)?.unwrap_or_default(),
            duration_minutes: row.get::<_, Option<u32>>(7)?.unwrap_or_default(),
            time_zone: row.get::<_, Option<String>>(8)?.unwrap_or_default(),
        }),
        None => None,
    };
    let from: Option<String> = row.get(9)?;
    let absolute = from.map(|from| -> rusqlite::Result<Absolute> {
        Ok(Absolute {
            from,
            to: row.get::<_, Option<String>>(10)?.unwrap_or_default(),
        })
    });
    Ok(Window {
        id: row.get(0)?,
        description: row.get(1)?,
        // The CHECK admits these two only.
        kind: WindowKind::parse(&kind).unwrap_or(WindowKind::Deny),
        selector: Selector {
            environment: environment.as_deref().and_then(Environment::parse),
            labels: serde_json::from_str::<BTreeMap<String, String>>(&labels).unwrap_or_default(),
        },
        recurrence,
        absolute: absolute.transpose()?,
    })
}

pub fn get(conn: &Connection, id: &str) -> Result<Option<Window>> {
    conn.prepare_cached(&format!("{SELECT} WHERE id = ?1"))
        .db()?
        .query_row([id], from_row)
        .optional()
        .db()
}

pub fn list(conn: &Connection, page: Page) -> Result<Vec<Window>> {
    conn.prepare_cached(&format!("{SELECT} ORDER BY id LIMIT ?1 OFFSET ?2"))
        .db()?
        .query_map(params![page.sql_limit(), page.sql_offset()], from_row)
        .db()?
        .collect::<rusqlite::Result<_>>()
        .db()
}

/// Whether any window is defined (most inventories have none: no write pays for them).
pub fn any(conn: &Connection) -> Result<bool> {
    conn.prepare_cached("SELECT EXISTS (SELECT 1 FROM windows)")
        .db()?
        .query_row([], |row| row.get(0))
        .db()
}

pub fn all(conn: &Connection) -> Result<Vec<Window>> {
    list(conn, Page::default())
}

fn write(conn: &Connection, sql: &str, w: &Window) -> Result<()> {
    let labels = serde_json::to_string(&w.selector.labels)
        .map_err(|err| AppError::Internal(format!("cannot encode labels: {err}")))?;
    let r = w.recurrence.as_ref();
    let a = w.absolute.as_ref();
    conn.prepare_cached(sql)
        .db()?
        .execute(params![
            w.id,
            w.description,
            w.kind.as_str(),
            w.selector.environment.map(Environment::as_str),
            labels,
            r.map(|r| r.days.join(",")),
            r.map(|r| r.start.as_str()),
            r.map(|r| r.duration_minutes),
            r.map(|r| r.time_zone.as_str()),
            a.map(|a| a.from.as_str()),
            a.map(|a| a.to.as_str()),
        ])
        .db()?;
    look_again_at_waiting(conn)
}

/// A rollout's waiting clusters are looked at again under the new schedules.
fn look_again_at_waiting(conn: &Connection) -> Result<()> {
    conn.prepare_cached(
        "UPDATE rollout_clusters SET window_opens_at = NULL WHERE state = 'waiting_window'",
    )
    .db()?
    .execute([])
    .db()?;
    Ok(())
}

pub fn insert(conn: &Connection, w: &Window) -> Result<()> {
    if exists(conn, "windows", &w.id)? {
        return Err(AppError::Conflict(format!(
            "window '{}' already exists",
            w.id
        )));
    }
    write(
        conn,
        "INSERT INTO windows (id, description, kind, environment, labels, days, start, \
         duration_minutes, time_zone, absolute_from, absolute_to) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
        w,
    )
}

pub fn update(conn: &Connection, w: &Window) -> Result<()> {
    write(
        conn,
        "UPDATE windows SET description = ?2, kind = ?3, environment = ?4, labels = ?5, \
         days = ?6, start = ?7, duration_minutes = ?8, time_zone = ?9, absolute_from = ?10, \
         absolute_to = ?11 WHERE id = ?1",
        w,
    )
}

pub fn delete(conn: &Connection, id: &str) -> Result<Window> {
    let w = get(conn, id)?.ok_or_else(|| AppError::NotFound(format!("window '{id}' not found")))?;
    conn.prepare_cached("DELETE FROM windows WHERE id = ?1")
        .db()?
        .execute([id])
        .db()?;
    look_again_at_waiting(conn)?;
    Ok(w)
}

/// Every window with its schedule (stored windows were checked when written; one that no
/// longer parses — a time zone gone from the database — is logged and left out).
pub fn scheduled(conn: &Connection) -> Result<Vec<(Window, window::Schedule)>> {
    let mut found = Vec::new();
    for w in all(conn)? {
        match window::schedule(&w) {
            Ok(schedule) => found.push((w, schedule)),
            Err(problems) => {
                tracing::warn!(window = %w.id, problems = %problems.join("; "), "window ignored")
            }
        }
    }
    Ok(found)
}

/// Per cluster (among `among`, or all), the indexes of the `windows` that `counts` and whose
/// selector matches it.
fn matched(
    conn: &Connection,
    windows: &[(Window, window::Schedule)],
    among: Option<&HashSet<&str>>,
    counts: impl Fn(&(Window, window::Schedule)) -> bool,
) -> Result<HashMap<String, Vec<usize>>> {
    let mut matched: HashMap<String, Vec<usize>> = HashMap::new();
    for (index, entry) in windows.iter().enumerate().filter(|(_, e)| counts(e)) {
        for cluster in overlays::matching_clusters(conn, &entry.0.selector)? {
            if among.is_none_or(|among| among.contains(cluster.as_str())) {
                matched.entry(cluster).or_default().push(index);
            }
        }
    }
    Ok(matched)
}

/// The clusters closed at `at` (among `among`, or all), each with the windows that close it.
pub fn closed(
    conn: &Connection,
    at: i64,
    among: Option<&HashSet<&str>>,
) -> Result<HashMap<String, Vec<String>>> {
    let windows = scheduled(conn)?;
    if windows.is_empty() {
        return Ok(HashMap::new());
    }
    // Deny windows only while open: a closed one cannot close anything.
    let matched = matched(conn, &windows, among, |(w, schedule)| {
        w.kind == WindowKind::Allow || schedule.is_open(at)
    })?;
    let mut closed = HashMap::new();
    for (cluster, indexes) in matched {
        let applying: Vec<Applying<'_>> = indexes
            .iter()
            .map(|i| Applying {
                window: &windows[*i].0,
                schedule: windows[*i].1.clone(),
            })
            .collect();
        let closing = window::closing(&applying, at);
        if !closing.is_empty() {
            let ids = closing.into_iter().map(str::to_owned).collect();
            closed.insert(cluster, ids);
        }
    }
    Ok(closed)
}

/// The windows that match one cluster, and whether it is open at `at` and until when
/// (`GET /clusters/{id}/windows`).
pub fn for_cluster(conn: &Connection, cluster_id: &str, at: i64) -> Result<ClusterWindows> {
    let head: Option<(String, String)> = conn
        .prepare_cached(
            "SELECT environment, coalesce((SELECT json_group_object(key, value) \
             FROM cluster_labels WHERE cluster_id = ?1), '{}') FROM clusters WHERE id = ?1",
        )
        .db()?
        .query_row([cluster_id], |row| Ok((row.get(0)?, row.get(1)?)))
        .optional()
        .db()?;
    let Some((environment, labels)) = head else {
        return Err(AppError::NotFound(format!(
            "cluster '{cluster_id}' not found"
        )));
    };
    let environment = Environment::parse(&environment)
        .ok_or_else(|| AppError::Internal(format!("cluster '{cluster_id}': environment")))?;
    let labels: BTreeMap<String, String> = serde_json::from_str(&labels).unwrap_or_default();
    let windows: Vec<(Window, window::Schedule)> = scheduled(conn)?
        .into_iter()
        .filter(|(w, _)| w.selector.matches(environment, &labels))
        .collect();
    let applying: Vec<Applying<'_>> = windows
        .iter()
        .map(|(window, schedule)| Applying {
            window,
            schedule: schedule.clone(),
        })
        .collect();
    Ok(window::cluster_windows(cluster_id, &applying, at))
}

/// For each of `clusters` (ids) closed at `at`: the first instant after `at` it opens, if
/// within the look-ahead (`None`: not within it). Clusters matched by the same windows share
/// one evaluation, so a step of thousands of stores costs a few.
pub fn opens_at(
    conn: &Connection,
    clusters: &[&str],
    at: i64,
) -> Result<HashMap<String, Option<i64>>> {
    let windows = scheduled(conn)?;
    if windows.is_empty() || clusters.is_empty() {
        return Ok(HashMap::new());
    }
    let wanted: HashSet<&str> = clusters.iter().copied().collect();
    let matched = matched(conn, &windows, Some(&wanted), |_| true)?;
    let mut judged: HashMap<Vec<usize>, (bool, Option<i64>)> = HashMap::new();
    let mut found = HashMap::new();
    for (cluster, indexes) in matched {
        let (open, next) = *judged.entry(indexes).or_insert_with_key(|indexes| {
            let applying: Vec<Applying<'_>> = indexes
                .iter()
                .map(|i| Applying {
                    window: &windows[*i].0,
                    schedule: windows[*i].1.clone(),
                })
                .collect();
            (
                window::is_open(&applying, at),
                window::next_change(&applying, at),
            )
        });
        if !open {
            found.insert(cluster, next);
        }
    }
    Ok(found)
}
