//! Clusters and everything assigned to them: component references with overrides, patches,
//! namespace and rolebinding references. A cluster is written as a whole: its assignment rows
//! are replaced inside the caller's transaction.

use rusqlite::{Connection, OptionalExtension, Row, params};

use super::sql::{Page, SqlResultExt, missing_ids};
use crate::domain::encode::{self, Catalog, LoadedCluster, LoadedRef};
use crate::domain::model::{Cluster, ComponentRef, Environment, IdRef, Patch};
use crate::domain::validate::quoted_list;
use crate::error::{AppError, Result};

/// Filters of `GET /clusters` and the Flux cluster list.
#[derive(Clone, Debug, Default)]
pub struct ClusterFilter {
    pub cluster_dns: Option<String>,
    pub environment: Option<Environment>,
    /// Clusters carrying every one of these labels (key, value).
    pub labels: Vec<(String, String)>,
    pub page: Page,
}

const SELECT: &str = "SELECT id, cluster_name, cluster_dns, environment, node_count, vm_image, k0s_version FROM clusters";

/// The cluster row alone; assignments are filled by `with_assignments`.
fn header_from_row(row: &Row) -> rusqlite::Result<Cluster> {
    let environment: String = row.get(3)?;
    Ok(Cluster {
        id: row.get(0)?,
        cluster_name: row.get(1)?,
        cluster_dns: row.get(2)?,
        // The CHECK constraint admits only the four tiers.
        environment: Environment::parse(&environment).unwrap_or(Environment::Dev),
        labels: Default::default(),
        node_count: row.get(4)?,
        vm_image: row.get(5)?,
        k0s_version: row.get(6)?,
        platform_components: Vec::new(),
        namespaces: Vec::new(),
        rolebindings: Vec::new(),
        patches: Default::default(),
    })
}

/// A cluster's labels.
pub fn labels_of(
    conn: &Connection,
    id: &str,
) -> Result<std::collections::BTreeMap<String, String>> {
    conn.prepare_cached("SELECT key, value FROM cluster_labels WHERE cluster_id = ?1")
        .db()?
        .query_map([id], |row| Ok((row.get(0)?, row.get(1)?)))
        .db()?
        .collect::<rusqlite::Result<_>>()
        .db()
}

fn with_assignments(conn: &Connection, mut cluster: Cluster) -> Result<Cluster> {
    let id = cluster.id.clone();
    cluster.labels = labels_of(conn, &id)?;
    cluster.platform_components = conn
        .prepare_cached(
            "SELECT component_id, enabled, oci_tag, component_path FROM cluster_components \
             WHERE cluster_id = ?1 ORDER BY position",
        )
        .db()?
        .query_map([&id], |row| component_ref(row, 0))
        .db()?
        .collect::<rusqlite::Result<_>>()
        .db()?;
    cluster.namespaces = id_refs(
        conn,
        "SELECT namespace_id FROM cluster_namespaces WHERE cluster_id = ?1 ORDER BY position",
        &id,
    )?;
    cluster.rolebindings = id_refs(
        conn,
        "SELECT rolebinding_id FROM cluster_rolebindings WHERE cluster_id = ?1 ORDER BY position",
        &id,
    )?;
    let mut stmt = conn
        .prepare_cached("SELECT component_id, patch FROM cluster_patches WHERE cluster_id = ?1")
        .db()?;
    let rows = stmt
        .query_map([&id], |row| {
            Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?))
        })
        .db()?;
    for row in rows {
        let (component, text) = row.db()?;
        let patch = parse_patch(&id, &component, &text)?;
        cluster.patches.insert(component, patch);
    }
    Ok(cluster)
}

fn parse_patch(cluster: &str, component: &str, text: &str) -> Result<Patch> {
    serde_json::from_str(text).map_err(|err| {
        AppError::Internal(format!(
            "stored patch of cluster '{cluster}' for '{component}' is not an object: {err}"
        ))
    })
}

fn id_refs(conn: &Connection, sql: &str, cluster_id: &str) -> Result<Vec<IdRef>> {
    Ok(super::sql::query_ids(conn, sql, cluster_id)?
        .into_iter()
        .map(|id| IdRef { id })
        .collect())
}

fn get_where(conn: &Connection, column: &str, value: &str) -> Result<Option<Cluster>> {
    let header = conn
        .prepare_cached(&format!("{SELECT} WHERE {column} = ?1"))
        .db()?
        .query_row([value], header_from_row)
        .optional()
        .db()?;
    header
        .map(|cluster| with_assignments(conn, cluster))
        .transpose()
}

pub fn exists(conn: &Connection, id: &str) -> Result<bool> {
    super::sql::exists(conn, "clusters", id)
}

pub fn get(conn: &Connection, id: &str) -> Result<Option<Cluster>> {
    get_where(conn, "id", id)
}

pub fn get_by_dns(conn: &Connection, cluster_dns: &str) -> Result<Option<Cluster>> {
    get_where(conn, "cluster_dns", cluster_dns)
}

/// Cluster rows only (no assignments), ordered by id.
pub fn list_headers(conn: &Connection, filter: &ClusterFilter) -> Result<Vec<Cluster>> {
    let mut stmt = conn
        .prepare_cached(&format!(
            "{SELECT} WHERE (?1 IS NULL OR cluster_dns = ?1) AND (?2 IS NULL OR environment = ?2) \
             AND (?5 IS NULL OR (SELECT count(*) FROM json_each(?5) wanted \
                  JOIN cluster_labels l ON l.cluster_id = clusters.id \
                  AND l.key = wanted.value ->> 0 AND l.value = wanted.value ->> 1) = json_array_length(?5)) \
             ORDER BY id LIMIT ?3 OFFSET ?4"
        ))
        .db()?;
    let rows = stmt
        .query_map(
            params![
                filter.cluster_dns,
                filter.environment.map(Environment::as_str),
                filter.page.sql_limit(),
                filter.page.sql_offset(),
                (!filter.labels.is_empty())
                    .then(|| serde_json::to_string(&filter.labels).unwrap_or_default())
            ],
            header_from_row,
        )
        .db()?;
    rows.collect::<rusqlite::Result<Vec<_>>>().db()
}

/// Every cluster's row alone, in id order, each handed to `f` as it is read: the fleet list
/// is built without holding every cluster at once (at 10,000 clusters that transient list
/// was the serving process's largest allocation).
pub fn map_headers<T>(conn: &Connection, mut f: impl FnMut(Cluster) -> T) -> Result<Vec<T>> {
    let mut stmt = conn.prepare_cached(&format!("{SELECT} ORDER BY id")).db()?;
    let rows = stmt.query_map([], header_from_row).db()?;
    let mut mapped = Vec::new();
    for cluster in rows {
        mapped.push(f(cluster.db()?));
    }
    Ok(mapped)
}

/// What the console's fleet page asks for.
#[derive(Clone, Debug, Default)]
pub struct Browse {
    /// Part of the id, name or DNS name, or of a `key=value` label (lowercase).
    pub search: Option<String>,
    pub environment: Option<Environment>,
    /// Only clusters whose latest decisive report of some HelmRelease is a failure.
    pub failing: bool,
    /// Only these clusters (ids), when given: those a maintenance window closes now.
    pub only: Option<Vec<String>>,
    /// Listed first after those with a reported failure (ids): the stale ones.
    pub next: Vec<String>,
    pub limit: u32,
    pub offset: u32,
}

/// A cluster as the fleet page lists it.
#[derive(Clone, Debug)]
pub struct Browsed {
    pub id: String,
    pub cluster_name: String,
    pub cluster_dns: String,
    pub environment: Environment,
    pub labels: std::collections::BTreeMap<String, String>,
}

/// One page of the clusters `browse` selects — those with a reported failure first, then
/// `next`, then by id — and how many it selects.
pub fn browse(conn: &Connection, browse: &Browse) -> Result<(u64, Vec<Browsed>)> {
    // The labels matching a search are found in one pass over the labels, not looked up
    // cluster by cluster (a third of the search's time at 100,000 clusters).
    const WHERE: &str = "WHERE (?1 IS NULL OR instr(c.id, ?1) > 0 OR instr(c.cluster_dns, ?1) > 0 \
         OR instr(lower(c.cluster_name), ?1) > 0 OR c.id IN (SELECT l.cluster_id FROM cluster_labels l \
         WHERE instr(l.key || '=' || l.value, ?1) > 0)) \
         AND (?2 IS NULL OR c.environment = ?2) \
         AND (?3 = 0 OR c.cluster_dns IN (SELECT cluster_dns FROM reported_objects \
         WHERE kind = 'HelmRelease' AND outcome = 'failure')) \
         AND (?6 IS NULL OR c.id IN (SELECT value FROM json_each(?6)))";
    // What needs a look first: a reported failure, then `next` (stale), then by id.
    const ORDER: &str = "ORDER BY c.cluster_dns IN (SELECT cluster_dns FROM reported_objects \
         WHERE kind = 'HelmRelease' AND outcome = 'failure') DESC, \
         c.id IN (SELECT value FROM json_each(?7)) DESC, c.id";
    let next = serde_json::Value::from(browse.next.clone()).to_string();
    let only = browse
        .only
        .as_ref()
        .map(|ids| serde_json::Value::from(ids.clone()).to_string());
    let filter = params![
        browse.search,
        browse.environment.map(Environment::as_str),
        browse.failing,
        None::<i64>,
        None::<i64>,
        only
    ];
    // A search selects few clusters and costs a scan of them all: one pass finds them and
    // counts them. Without one, the count comes from the index and the page alone is read.
    let searching = browse.search.is_some();
    let total: Option<i64> = match searching {
        true => None,
        false => Some(
            conn.prepare_cached(&format!("SELECT count(*) FROM clusters c {WHERE}"))
                .db()?
                .query_row(filter, |row| row.get(0))
                .db()?,
        ),
    };
    let (limit, offset) = match searching {
        true => (-1, 0),
        false => (i64::from(browse.limit), i64::from(browse.offset)),
    };
    // The page's ids first, its rows and labels after: sorting carries only the id, and
    // labels are read for the rows shown, not for every row sorted.
    let ids = conn
        .prepare_cached(&format!(
            "SELECT c.id FROM clusters c {WHERE} {ORDER} LIMIT ?4 OFFSET ?5"
        ))
        .db()?
        .query_map(
            params![
                browse.search,
                browse.environment.map(Environment::as_str),
                browse.failing,
                limit,
                offset,
                only,
                next
            ],
            |row| row.get::<_, String>(0),
        )
        .db()?
        .collect::<rusqlite::Result<Vec<_>>>()
        .db()?;
    let (total, ids) = match total {
        Some(total) => (total, ids),
        None => (
            ids.len() as i64,
            ids.into_iter()
                .skip(browse.offset as usize)
                .take(browse.limit as usize)
                .collect(),
        ),
    };
    let mut row_of = conn
        .prepare_cached(
            "SELECT id, cluster_name, cluster_dns, environment FROM clusters WHERE id = ?1",
        )
        .db()?;
    let mut page = Vec::with_capacity(ids.len());
    for id in ids {
        let found = row_of
            .query_row([&id], |row| {
                let environment: String = row.get(3)?;
                Ok(Browsed {
                    id: row.get(0)?,
                    cluster_name: row.get(1)?,
                    cluster_dns: row.get(2)?,
                    environment: Environment::parse(&environment).unwrap_or(Environment::Dev),
                    labels: Default::default(),
                })
            })
            .optional()
            .db()?;
        if let Some(mut cluster) = found {
            cluster.labels = labels_of(conn, &cluster.id)?;
            page.push(cluster);
        }
    }
    Ok((total.max(0) as u64, page))
}

/// Clusters whose latest decisive report of some HelmRelease is a failure (the partial
/// index of failing HelmReleases; reports of a deleted cluster are deleted with it).
pub fn failing_count(conn: &Connection) -> Result<u64> {
    conn.prepare_cached(
        "SELECT count(DISTINCT cluster_dns) FROM reported_objects \
         WHERE kind = 'HelmRelease' AND outcome = 'failure'",
    )
    .db()?
    .query_row([], |row| row.get::<_, i64>(0))
    .db()
    .map(|n| n.max(0) as u64)
}

/// The ids, in id order, of the clusters whose DNS name `keep` keeps: one pass, and no
/// string allocated for a cluster not kept.
pub fn ids_where(conn: &Connection, mut keep: impl FnMut(&str) -> bool) -> Result<Vec<String>> {
    let mut stmt = conn
        .prepare_cached("SELECT id, cluster_dns FROM clusters ORDER BY id")
        .db()?;
    let mut rows = stmt.query([]).db()?;
    let mut ids = Vec::new();
    while let Some(row) = rows.next().db()? {
        // STRICT and NOT NULL: always text.
        if keep(row.get_ref(1).db()?.as_str().unwrap_or_default()) {
            ids.push(row.get(0).db()?);
        }
    }
    Ok(ids)
}

/// Every cluster's id and DNS name (or only the one with this DNS name), ordered by id.
pub fn ids_and_dns(conn: &Connection, cluster_dns: Option<&str>) -> Result<Vec<(String, String)>> {
    id_and_dns_rows(
        conn,
        "SELECT id, cluster_dns FROM clusters WHERE ?1 IS NULL OR cluster_dns = ?1 ORDER BY id",
        [cluster_dns],
    )
}

/// The ids and DNS names of those of `ids` that exist.
pub fn ids_and_dns_of(conn: &Connection, ids: &[String]) -> Result<Vec<(String, String)>> {
    id_and_dns_rows(
        conn,
        "SELECT id, cluster_dns FROM clusters WHERE id IN (SELECT value FROM json_each(?1))",
        [serde_json::Value::from(ids).to_string()],
    )
}

/// The (id, DNS name) rows `sql` selects.
fn id_and_dns_rows(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
) -> Result<Vec<(String, String)>> {
    conn.prepare_cached(sql)
        .db()?
        .query_map(params, |row| Ok((row.get(0)?, row.get(1)?)))
        .db()?
        .collect::<rusqlite::Result<Vec<_>>>()
        .db()
}

/// Every cluster, whole, in id order, one in memory at a time: each assignment table is read
/// once in primary-key order and merged by cluster id (`get` per cluster costs five lookups
/// each).
pub fn for_each(conn: &Connection, mut visit: impl FnMut(Cluster) -> Result<()>) -> Result<()> {
    let mut headers = conn.prepare(&format!("{SELECT} ORDER BY id")).db()?;
    let mut components = conn
        .prepare(
            "SELECT cluster_id, component_id, enabled, oci_tag, component_path, position \
             FROM cluster_components ORDER BY cluster_id, component_id",
        )
        .db()?;
    let mut patches = conn
        .prepare("SELECT cluster_id, component_id, patch FROM cluster_patches ORDER BY cluster_id, component_id")
        .db()?;
    let mut namespaces = conn
        .prepare("SELECT cluster_id, namespace_id, position FROM cluster_namespaces ORDER BY cluster_id, namespace_id")
        .db()?;
    let mut rolebindings = conn
        .prepare("SELECT cluster_id, rolebinding_id, position FROM cluster_rolebindings ORDER BY cluster_id, rolebinding_id")
        .db()?;
    let mut labels = conn
        .prepare("SELECT cluster_id, key, value FROM cluster_labels ORDER BY cluster_id, key")
        .db()?;
    let mut headers = headers.query([]).db()?;
    let mut components = Cursor::new(components.query([]).db()?, true);
    let mut patches = Cursor::new(patches.query([]).db()?, true);
    let mut namespaces = Cursor::new(namespaces.query([]).db()?, true);
    let mut rolebindings = Cursor::new(rolebindings.query([]).db()?, true);
    let mut labels = Cursor::new(labels.query([]).db()?, true);
    while let Some(row) = headers.next().db()? {
        let mut cluster = header_from_row(row).db()?;
        let id = cluster.id.clone();
        // Read in key order (no second lookup per row), put in position order here.
        let mut positioned = Vec::new();
        components.take_for(&id, |row| {
            positioned.push((row.get(5).db()?, component_ref(row, 1).db()?));
            Ok(())
        })?;
        cluster.platform_components = in_position_order(positioned);
        for (cursor, refs) in [
            (&mut namespaces, &mut cluster.namespaces),
            (&mut rolebindings, &mut cluster.rolebindings),
        ] {
            let mut positioned = Vec::new();
            cursor.take_for(&id, |row| {
                positioned.push((
                    row.get(2).db()?,
                    IdRef {
                        id: row.get(1).db()?,
                    },
                ));
                Ok(())
            })?;
            *refs = in_position_order(positioned);
        }
        labels.take_for(&id, |row| {
            cluster.labels.insert(row.get(1).db()?, row.get(2).db()?);
            Ok(())
        })?;
        patches.take_for(&id, |row| {
            let component: String = row.get(1).db()?;
            let text = row.get_ref(2).and_then(|v| Ok(v.as_str()?)).db()?;
            let patch = parse_patch(&id, &component, text)?;
            cluster.patches.insert(component, patch);
            Ok(())
        })?;
        visit(cluster)?;
    }
    Ok(())
}

/// Entries read in key order, put in the order the client sent them.
fn in_position_order<T>(mut positioned: Vec<(i64, T)>) -> Vec<T> {
    positioned.sort_unstable_by_key(|(position, _)| *position);
    positioned.into_iter().map(|(_, entry)| entry).collect()
}

/// A component entry from the columns (component_id, enabled, oci_tag, component_path)
/// starting at `first`.
fn component_ref(row: &Row, first: usize) -> rusqlite::Result<ComponentRef> {
    Ok(ComponentRef {
        id: row.get(first)?,
        enabled: row.get(first + 1)?,
        oci_tag: row.get(first + 2)?,
        component_path: row.get(first + 3)?,
    })
}

pub fn list(conn: &Connection, filter: &ClusterFilter) -> Result<Vec<Cluster>> {
    list_headers(conn, filter)?
        .into_iter()
        .map(|c| with_assignments(conn, c))
        .collect()
}

pub fn insert(conn: &Connection, cluster: &Cluster) -> Result<()> {
    if super::sql::exists(conn, "clusters", &cluster.id)? {
        return Err(AppError::Conflict(format!(
            "cluster '{}' already exists",
            cluster.id
        )));
    }
    check_dns_free(conn, cluster)?;
    check_references(conn, cluster)?;
    conn.prepare_cached(
        "INSERT INTO clusters (id, cluster_name, cluster_dns, environment, node_count, vm_image, k0s_version) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )
    .db()?
    .execute(params![
        cluster.id,
        cluster.cluster_name,
        cluster.cluster_dns,
        cluster.environment.as_str(),
        cluster.node_count,
        cluster.vm_image,
        cluster.k0s_version
    ])
    .db()?;
    write_assignments(conn, cluster)
}

/// Overwrites an existing cluster with `cluster` (the caller merged the partial update).
pub fn replace(conn: &Connection, cluster: &Cluster) -> Result<()> {
    check_dns_free(conn, cluster)?;
    check_references(conn, cluster)?;
    conn.prepare_cached(
        "UPDATE clusters SET cluster_name = ?2, cluster_dns = ?3, environment = ?4, node_count = ?5, \
         vm_image = ?6, k0s_version = ?7 WHERE id = ?1",
    )
    .db()?
    .execute(params![
        cluster.id,
        cluster.cluster_name,
        cluster.cluster_dns,
        cluster.environment.as_str(),
        cluster.node_count,
        cluster.vm_image,
        cluster.k0s_version
    ])
    .db()?;
    for table in [
        "cluster_labels",
        "cluster_patches",
        "cluster_components",
        "cluster_namespaces",
        "cluster_rolebindings",
    ] {
        conn.prepare_cached(&format!("DELETE FROM {table} WHERE cluster_id = ?1"))
            .db()?
            .execute([&cluster.id])
            .db()?;
    }
    write_assignments(conn, cluster)
}

pub fn delete(conn: &Connection, id: &str) -> Result<Cluster> {
    let cluster =
        get(conn, id)?.ok_or_else(|| AppError::NotFound(format!("cluster '{id}' not found")))?;
    // Assignments and patches go with it (ON DELETE CASCADE).
    conn.prepare_cached("DELETE FROM clusters WHERE id = ?1")
        .db()?
        .execute([id])
        .db()?;
    Ok(cluster)
}

fn check_dns_free(conn: &Connection, cluster: &Cluster) -> Result<()> {
    let holder: Option<String> = conn
        .prepare_cached("SELECT id FROM clusters WHERE cluster_dns = ?1 AND id <> ?2")
        .db()?
        .query_row(params![cluster.cluster_dns, cluster.id], |row| row.get(0))
        .optional()
        .db()?;
    match holder {
        Some(other) => Err(AppError::Conflict(format!(
            "cluster_dns '{}' is already used by cluster '{other}'",
            cluster.cluster_dns
        ))),
        None => Ok(()),
    }
}

/// `422` naming every referenced id that has no definition.
fn check_references(conn: &Connection, cluster: &Cluster) -> Result<()> {
    let checks = [
        (
            "platform component",
            "platform_components",
            missing_ids(
                conn,
                "platform_components",
                cluster.platform_components.iter().map(|r| r.id.as_str()),
            )?,
        ),
        (
            "namespace",
            "namespaces",
            missing_ids(
                conn,
                "namespaces",
                cluster.namespaces.iter().map(|r| r.id.as_str()),
            )?,
        ),
        (
            "rolebinding",
            "rolebindings",
            missing_ids(
                conn,
                "rolebindings",
                cluster.rolebindings.iter().map(|r| r.id.as_str()),
            )?,
        ),
    ];
    let problems: Vec<String> = checks
        .iter()
        .filter(|(_, _, missing)| !missing.is_empty())
        .map(|(kind, field, missing)| {
            format!("{field}: unknown {kind}(s) {}", quoted_list(missing))
        })
        .collect();
    if problems.is_empty() {
        Ok(())
    } else {
        Err(AppError::Validation(problems.join("; ")))
    }
}

fn write_assignments(conn: &Connection, cluster: &Cluster) -> Result<()> {
    let mut labels = conn
        .prepare_cached("INSERT INTO cluster_labels (cluster_id, key, value) VALUES (?1, ?2, ?3)")
        .db()?;
    for (key, value) in &cluster.labels {
        labels.execute(params![cluster.id, key, value]).db()?;
    }
    let mut insert = conn
        .prepare_cached(
            "INSERT INTO cluster_components (cluster_id, component_id, position, enabled, oci_tag, component_path) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )
        .db()?;
    for (position, reference) in cluster.platform_components.iter().enumerate() {
        insert
            .execute(params![
                cluster.id,
                reference.id,
                position as i64,
                reference.enabled,
                reference.oci_tag,
                reference.component_path
            ])
            .db()?;
    }
    for (table, column, refs) in [
        ("cluster_namespaces", "namespace_id", &cluster.namespaces),
        (
            "cluster_rolebindings",
            "rolebinding_id",
            &cluster.rolebindings,
        ),
    ] {
        let mut insert = conn
            .prepare_cached(&format!(
                "INSERT INTO {table} (cluster_id, {column}, position) VALUES (?1, ?2, ?3)"
            ))
            .db()?;
        for (position, reference) in refs.iter().enumerate() {
            insert
                .execute(params![cluster.id, reference.id, position as i64])
                .db()?;
        }
    }
    let mut insert = conn
        .prepare_cached(
            "INSERT INTO cluster_patches (cluster_id, component_id, patch) VALUES (?1, ?2, ?3)",
        )
        .db()?;
    for (component, patch) in &cluster.patches {
        let text = serde_json::to_string(patch)
            .map_err(|err| AppError::Internal(format!("cannot encode patch: {err}")))?;
        insert.execute(params![cluster.id, component, text]).db()?;
    }
    Ok(())
}

/// How many clusters the inventory holds.
pub fn count(conn: &Connection) -> Result<i64> {
    conn.query_row("SELECT count(*) FROM clusters", [], |row| row.get(0))
        .db()
}

/// The cluster with this DNS name read straight into catalog indices and JSON texts, for the
/// encoder. `None` if it does not exist; an error if it names something `catalog` lacks.
pub fn load_encodable(
    conn: &Connection,
    catalog: &Catalog,
    cluster_dns: &str,
) -> Result<Option<LoadedCluster>> {
    let header = conn
        .prepare_cached("SELECT id, cluster_name, environment FROM clusters WHERE cluster_dns = ?1")
        .db()?
        .query_row([cluster_dns], |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, String>(2)?,
            ))
        })
        .optional()
        .db()?;
    let Some((id, name, environment)) = header else {
        return Ok(None);
    };
    let mut cluster = LoadedCluster {
        info: encode::cluster_info(&name, cluster_dns, &environment),
        id,
        cluster_dns: cluster_dns.to_owned(),
        components: Vec::new(),
        namespaces: Box::default(),
        rolebindings: Box::default(),
    };
    let mut stmt = conn
        .prepare_cached(&format!(
            "{ENCODABLE_COMPONENTS} WHERE cc.cluster_id = ?1 ORDER BY cc.position"
        ))
        .db()?;
    let mut rows = stmt.query([&cluster.id]).db()?;
    while let Some(row) = rows.next().db()? {
        cluster
            .components
            .push(loaded_ref(row, catalog, &cluster.id)?);
    }
    let indices = |sql: &str, index: &std::collections::HashMap<String, u32>, kind: &str| {
        super::sql::query_ids(conn, sql, &cluster.id)?
            .iter()
            .map(|name| {
                index
                    .get(name)
                    .copied()
                    .ok_or_else(|| dangling(&cluster.id, kind, name))
            })
            .collect::<Result<Box<[u32]>>>()
    };
    let namespaces = indices(
        "SELECT namespace_id FROM cluster_namespaces WHERE cluster_id = ?1 ORDER BY position",
        &catalog.namespace_index,
        "namespace",
    )?;
    let rolebindings = indices(
        "SELECT rolebinding_id FROM cluster_rolebindings WHERE cluster_id = ?1 ORDER BY position",
        &catalog.rolebinding_index,
        "rolebinding",
    )?;
    cluster.namespaces = namespaces;
    cluster.rolebindings = rolebindings;
    layered(conn, catalog, cluster, &environment).map(Some)
}

/// `cluster` with the catalog's overlays that match it layered in (README, "Overlays").
fn layered(
    conn: &Connection,
    catalog: &Catalog,
    cluster: LoadedCluster,
    environment: &str,
) -> Result<LoadedCluster> {
    if !catalog.has_overlays() {
        return Ok(cluster);
    }
    let environment = Environment::parse(environment).unwrap_or(Environment::Dev);
    let labels = labels_of(conn, &cluster.id)?;
    let id = cluster.id.clone();
    cluster
        .layered(catalog, environment, &labels)
        .map_err(|err| AppError::Internal(format!("cluster '{id}': {err}")))
}

/// Columns 1.. of a component reference as the encoder needs them (column 0: the cluster).
const ENCODABLE_COMPONENTS: &str = "SELECT cc.cluster_id, cc.component_id, cc.enabled, \
     cc.component_path, cc.oci_tag, cp.patch FROM cluster_components cc \
     LEFT JOIN cluster_patches cp ON cp.cluster_id = cc.cluster_id AND cp.component_id = cc.component_id";

fn dangling(cluster: &str, kind: &str, id: &str) -> AppError {
    AppError::Internal(format!(
        "cluster '{cluster}' references unknown {kind} '{id}'"
    ))
}

fn loaded_ref(row: &Row, catalog: &Catalog, cluster: &str) -> Result<LoadedRef> {
    let text = |i: usize| -> Result<Option<&str>> {
        row.get_ref(i).and_then(|v| Ok(v.as_str_or_null()?)).db()
    };
    let component = text(1)?.unwrap_or_default();
    let index = *catalog
        .component_index
        .get(component)
        .ok_or_else(|| dangling(cluster, "component", component))?;
    Ok(LoadedRef {
        component: index,
        enabled: row.get(2).db()?,
        path: text(3)?.map(encode::json_text),
        tag: text(4)?.map(encode::json_text),
        // Patches are stored as the compact JSON the API encodes; served as stored.
        patch: text(5)?.map(|p| p.as_bytes().into()),
    })
}

/// Replaces the connection's scope (a TEMP table) with these cluster ids.
pub fn set_scope<'a>(conn: &Connection, ids: impl IntoIterator<Item = &'a str>) -> Result<()> {
    conn.execute_batch(
        "CREATE TEMP TABLE IF NOT EXISTS write_scope (id TEXT PRIMARY KEY NOT NULL) WITHOUT ROWID; \
         DELETE FROM temp.write_scope;",
    )
    .db()?;
    // One statement for the whole list (thousands of ids for a catalog edit).
    let ids: Vec<&str> = ids.into_iter().collect();
    let list = serde_json::to_string(&ids)
        .map_err(|err| AppError::Internal(format!("cannot encode ids: {err}")))?;
    conn.prepare_cached(
        "INSERT OR IGNORE INTO temp.write_scope (id) SELECT value FROM json_each(?1)",
    )
    .db()?
    .execute([list])
    .db()?;
    Ok(())
}

/// The id and DNS name of every existing cluster of the scope (`set_scope`), in id order.
pub fn dns_in_scope(conn: &Connection) -> Result<Vec<(String, String)>> {
    id_and_dns_rows(
        conn,
        "SELECT c.id, c.cluster_dns FROM temp.write_scope s JOIN clusters c ON c.id = s.id ORDER BY s.id",
        [],
    )
}

/// Streams every existing cluster of the scope (`set_scope`), in id order, read for the
/// encoder: four ordered queries merged by cluster id, one cluster in memory at a time.
/// `CROSS JOIN` keeps the scope the outer loop (SQLite has no statistics for the TEMP table
/// and would otherwise scan every assignment once per chunk).
pub fn for_each_in_scope(
    conn: &Connection,
    catalog: &Catalog,
    feeds: [bool; 3],
    mut visit: impl FnMut(LoadedCluster) -> Result<()>,
) -> Result<()> {
    let mut headers = conn
        .prepare_cached(
            "SELECT c.id, c.cluster_name, c.cluster_dns, c.environment FROM temp.write_scope s \
             JOIN clusters c ON c.id = s.id ORDER BY s.id",
        )
        .db()?;
    // Assignments and patches in primary-key order (no second lookup per row), merged and
    // put in position order here.
    let mut components = conn
        .prepare_cached(
            "SELECT cc.cluster_id, cc.component_id, cc.enabled, cc.component_path, cc.oci_tag, \
             cc.position FROM temp.write_scope s CROSS JOIN cluster_components cc ON cc.cluster_id = s.id \
             ORDER BY s.id, cc.component_id",
        )
        .db()?;
    let mut patches = conn
        .prepare_cached(
            "SELECT p.cluster_id, p.component_id, p.patch FROM temp.write_scope s \
             CROSS JOIN cluster_patches p ON p.cluster_id = s.id ORDER BY s.id, p.component_id",
        )
        .db()?;
    let mut namespaces = conn
        .prepare_cached(
            "SELECT n.cluster_id, n.namespace_id FROM temp.write_scope s \
             CROSS JOIN cluster_namespaces n ON n.cluster_id = s.id ORDER BY s.id, n.position",
        )
        .db()?;
    let mut rolebindings = conn
        .prepare_cached(
            "SELECT r.cluster_id, r.rolebinding_id FROM temp.write_scope s \
             CROSS JOIN cluster_rolebindings r ON r.cluster_id = s.id ORDER BY s.id, r.position",
        )
        .db()?;
    let mut labels = conn
        .prepare_cached(
            "SELECT l.cluster_id, l.key, l.value FROM temp.write_scope s \
             CROSS JOIN cluster_labels l ON l.cluster_id = s.id ORDER BY s.id, l.key",
        )
        .db()?;
    let mut headers = headers.query([]).db()?;
    // Labels only choose overlays.
    let mut labels = Cursor::new(labels.query([]).db()?, catalog.has_overlays());
    // Feeds not asked for are read as empty (a catalog edit needs only its own feed).
    let [with_components, with_namespaces, with_rolebindings] = feeds;
    let mut components = Cursor::new(components.query([]).db()?, with_components);
    let mut patches = Cursor::new(patches.query([]).db()?, with_components);
    let mut namespaces = Cursor::new(namespaces.query([]).db()?, with_namespaces);
    let mut rolebindings = Cursor::new(rolebindings.query([]).db()?, with_rolebindings);
    while let Some(row) = headers.next().db()? {
        let id: String = row.get(0).db()?;
        let name: String = row.get(1).db()?;
        let dns: String = row.get(2).db()?;
        let environment: String = row.get(3).db()?;
        // (component id, position, reference), by component id.
        let mut refs: Vec<(String, i64, LoadedRef)> = Vec::new();
        components.take_for(&id, |row| {
            let component: String = row.get(1).db()?;
            let index = *catalog
                .component_index
                .get(&component)
                .ok_or_else(|| dangling(&id, "component", &component))?;
            let text = |i: usize| -> Result<Option<&str>> {
                row.get_ref(i).and_then(|v| Ok(v.as_str_or_null()?)).db()
            };
            let reference = LoadedRef {
                component: index,
                enabled: row.get(2).db()?,
                path: text(3)?.map(encode::json_text),
                tag: text(4)?.map(encode::json_text),
                patch: None,
            };
            refs.push((component, row.get(5).db()?, reference));
            Ok(())
        })?;
        let mut next = 0;
        patches.take_for(&id, |row| {
            let component = row.get_ref(1).and_then(|v| Ok(v.as_str()?)).db()?;
            while next < refs.len() && refs[next].0.as_str() < component {
                next += 1;
            }
            if let Some((_, _, reference)) = refs.get_mut(next).filter(|r| r.0 == component) {
                let patch = row.get_ref(2).and_then(|v| Ok(v.as_str()?)).db()?;
                reference.patch = Some(patch.as_bytes().into());
            }
            Ok(())
        })?;
        refs.sort_unstable_by_key(|(_, position, _)| *position);
        let refs = refs
            .into_iter()
            .map(|(_, _, reference)| reference)
            .collect();
        let indices =
            |cursor: &mut Cursor, index: &std::collections::HashMap<String, u32>, kind| {
                let mut found = Vec::new();
                cursor.take_for(&id, |row| {
                    let name = row.get_ref(1).and_then(|v| Ok(v.as_str()?)).db()?;
                    found.push(*index.get(name).ok_or_else(|| dangling(&id, kind, name))?);
                    Ok(())
                })?;
                Ok::<_, AppError>(found.into_boxed_slice())
            };
        let namespaces = indices(&mut namespaces, &catalog.namespace_index, "namespace")?;
        let rolebindings = indices(&mut rolebindings, &catalog.rolebinding_index, "rolebinding")?;
        let loaded = LoadedCluster {
            info: encode::cluster_info(&name, &dns, &environment),
            id,
            cluster_dns: dns,
            components: refs,
            namespaces,
            rolebindings,
        };
        if !catalog.has_overlays() {
            visit(loaded)?;
            continue;
        }
        let mut own_labels = std::collections::BTreeMap::new();
        labels.take_for(&loaded.id, |row| {
            own_labels.insert(row.get(1).db()?, row.get(2).db()?);
            Ok(())
        })?;
        let env = Environment::parse(&environment).unwrap_or(Environment::Dev);
        let id = loaded.id.clone();
        let layered = loaded
            .layered(catalog, env, &own_labels)
            .map_err(|err| AppError::Internal(format!("cluster '{id}': {err}")))?;
        visit(layered)?;
    }
    Ok(())
}

/// Rows ordered by cluster id (column 0), taken one cluster at a time. The owner of a row is
/// compared in place: nothing is allocated per row.
struct Cursor<'s> {
    rows: rusqlite::Rows<'s>,
    started: bool,
    /// `false`: the rows are not needed; the query is never stepped.
    wanted: bool,
}

impl<'s> Cursor<'s> {
    fn new(rows: rusqlite::Rows<'s>, wanted: bool) -> Self {
        Cursor {
            rows,
            started: false,
            wanted,
        }
    }

    /// Hands every row of `cluster` to `take`, in query order.
    fn take_for(&mut self, cluster: &str, mut take: impl FnMut(&Row) -> Result<()>) -> Result<()> {
        use rusqlite::fallible_streaming_iterator::FallibleStreamingIterator;
        if !self.wanted {
            return Ok(());
        }
        if !self.started {
            self.rows.advance().db()?;
            self.started = true;
        }
        loop {
            let order = match self.rows.get() {
                None => return Ok(()),
                Some(row) => {
                    let owner = row.get_ref(0).and_then(|v| Ok(v.as_str()?)).db()?;
                    let order = owner.cmp(cluster);
                    if order == std::cmp::Ordering::Equal {
                        take(row)?;
                    }
                    order
                }
            };
            // Both sides are in id order: a smaller id has no header in scope.
            if order == std::cmp::Ordering::Greater {
                return Ok(());
            }
            self.rows.advance().db()?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Clusters whose entries are stored out of key order (positions, label keys), one with
    /// everything and one with nothing, and a third after them.
    fn database() -> Connection {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("PRAGMA foreign_keys = ON").unwrap();
        crate::store::migrate::migrate(&mut conn, |_| Ok(())).unwrap();
        conn.execute_batch(
            "INSERT INTO platform_components (id, component_path, component_version, oci_url, oci_tag) \
                 VALUES ('a', 'p', '1', 'oci://x', '1'), ('b', 'p', '1', 'oci://x', '1'), ('c', 'p', '1', 'oci://x', '1');
             INSERT INTO namespaces (id) VALUES ('n1'), ('n2');
             INSERT INTO rolebindings (id, role) VALUES ('r1', 'view'), ('r2', 'edit');
             INSERT INTO clusters (id, cluster_name, cluster_dns, environment, node_count, vm_image) \
                 VALUES ('k1', 'one', 'k1.example', 'prod', 3, 'img'), ('k2', 'two', 'k2.example', 'dev', NULL, NULL), \
                        ('k3', 'three', 'k3.example', 'qa', NULL, NULL);
             INSERT INTO cluster_components (cluster_id, component_id, position, enabled, oci_tag, component_path) \
                 VALUES ('k1', 'c', 0, 1, 'v3', NULL), ('k1', 'a', 1, 0, NULL, 'own/path'), ('k1', 'b', 2, 1, NULL, NULL), \
                        ('k3', 'b', 0, 1, NULL, NULL);
             INSERT INTO cluster_patches (cluster_id, component_id, patch) VALUES ('k1', 'a', '{\"x\":1}'), ('k1', 'c', '{\"y\":{\"z\":2}}');
             INSERT INTO cluster_namespaces (cluster_id, namespace_id, position) VALUES ('k1', 'n2', 0), ('k1', 'n1', 1), ('k3', 'n1', 0);
             INSERT INTO cluster_rolebindings (cluster_id, rolebinding_id, position) VALUES ('k1', 'r2', 0), ('k1', 'r1', 1);
             INSERT INTO cluster_labels (cluster_id, key, value) VALUES ('k1', 'zone', 'b'), ('k1', 'tier', 'edge'), ('k3', 'zone', 'a');",
        )
        .unwrap();
        conn
    }

    #[test]
    fn every_cluster_streamed_is_the_cluster_read_alone() {
        let conn = database();
        let mut streamed = Vec::new();
        for_each(&conn, |cluster| {
            streamed.push(cluster);
            Ok(())
        })
        .unwrap();
        let alone: Vec<Cluster> = ["k1", "k2", "k3"]
            .iter()
            .map(|id| get(&conn, id).unwrap().unwrap())
            .collect();
        assert_eq!(streamed, alone);
        let order: Vec<&str> = streamed[0]
            .platform_components
            .iter()
            .map(|c| c.id.as_str())
            .collect();
        assert_eq!(order, ["c", "a", "b"], "position order, not key order");
        assert_eq!(streamed[0].namespaces[0].id, "n2");
        assert_eq!(streamed[0].patches.len(), 2);
        assert!(streamed[1].platform_components.is_empty() && streamed[1].labels.is_empty());
    }
}
