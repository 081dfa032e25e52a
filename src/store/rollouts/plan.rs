//! Planning a rollout against the inventory, and storing the plan.

use poem_openapi::types::ToJSON;
use std::collections::BTreeMap;

use rusqlite::{Connection, params};

use super::active_for;
use crate::domain::model::{ComponentRef, Environment};
use crate::domain::overlay::{self, EffectiveComponent, Layer};
use crate::domain::rollout::{self, Candidate, ClusterState, Plan, RolloutSpec, RolloutState};
use crate::error::{AppError, Result};
use crate::store::{SqlResultExt, components, overlays};

// ---------------------------------------------------------------------------------------
// Planning

/// A cluster that has the component enabled (itself, or through an overlay), with its own
/// overrides.
pub(super) struct Using {
    candidate: Candidate,
    oci_tag: Option<String>,
    component_path: Option<String>,
}

/// The clusters a rollout of `component` can move: within `overlay`'s selector when the
/// rollout names one.
pub(super) fn using(
    conn: &Connection,
    component: &str,
    overlay: Option<&str>,
) -> Result<Vec<Using>> {
    Ok(assigned(conn, component, overlay)?
        .into_iter()
        .filter(|a| a.values.enabled.0)
        .map(|a| Using {
            candidate: a.candidate,
            oci_tag: a.own.as_ref().and_then(|o| o.oci_tag.clone()),
            component_path: a.own.and_then(|o| o.component_path),
        })
        .collect())
}

/// A cluster that has the component (enabled or not), as a rollout of it sees the cluster.
pub(super) struct Assigned {
    /// `pinned`: its `oci_tag` is set above the layer the rollout promotes into (the catalog,
    /// or the rollout's overlay), unless an aborted rollout of the component left its own tag
    /// there (the cluster is still on that rollout's target: a later rollout moves it on).
    pub candidate: Candidate,
    /// Its own entry, if it lists the component itself.
    pub own: Option<ComponentRef>,
    /// Its values for the component, each with the layer that set it.
    pub values: EffectiveComponent,
    /// Whether its `oci_tag` / `component_path` is set above the promoted layer (so the
    /// promotion does not change it).
    pub tag_above: bool,
    pub path_above: bool,
}

/// Every cluster that has `component`, in id order: within `overlay`'s selector when the
/// rollout names one.
pub(super) fn assigned(
    conn: &Connection,
    component: &str,
    overlay: Option<&str>,
) -> Result<Vec<Assigned>> {
    let all = overlays::all(conn)?;
    // Clusters that do not list the component can have it only from an overlay.
    let assigned_by_overlays = all.iter().any(|o| {
        o.platform_components
            .iter()
            .any(|e| e.id == component && e.enabled.is_some())
    });
    let mut stmt = conn
        .prepare_cached(
            // The component's aborted rollouts first, once; then per cluster a primary-key
            // lookup in each (not a scan of every rollout's clusters per cluster).
            "WITH aborted AS MATERIALIZED (SELECT id, json_extract(spec, '$.target.oci_tag') AS tag \
               FROM rollouts WHERE component = ?1 AND state = 'aborted') \
             SELECT c.id, c.cluster_dns, c.environment, cc.enabled, cc.oci_tag, cc.component_path, \
             (SELECT json_group_object(l.key, l.value) FROM cluster_labels l WHERE l.cluster_id = c.id), \
             EXISTS (SELECT 1 FROM aborted a CROSS JOIN rollout_clusters rc \
               ON rc.rollout_id = a.id AND rc.cluster_id = c.id \
               WHERE rc.changed = 1 AND rc.state NOT IN ('rolled_back', 'pinned') AND cc.oci_tag IS a.tag) \
             FROM clusters c LEFT JOIN cluster_components cc \
               ON cc.cluster_id = c.id AND cc.component_id = ?1 \
             WHERE cc.cluster_id IS NOT NULL OR ?2 ORDER BY c.id",
        )
        .db()?;
    let mut rows = stmt.query(params![component, assigned_by_overlays]).db()?;
    let mut found = Vec::new();
    while let Some(row) = rows.next().db()? {
        let environment: String = row.get(2).db()?;
        let environment = Environment::parse(&environment).unwrap_or(Environment::Dev);
        let labels: BTreeMap<String, String> = row
            .get::<_, Option<String>>(6)
            .db()?
            .and_then(|text| serde_json::from_str(&text).ok())
            .unwrap_or_default();
        let matched = overlay::matching(&all, environment, &labels);
        // Where the promoted layer sits among the cluster's overlays (`None`: the catalog,
        // below them all). A rollout naming an overlay moves only clusters it matches.
        let promoted = match overlay {
            Some(id) => match matched.iter().position(|o| o.id == id) {
                Some(position) => Some(position),
                None => continue,
            },
            None => None,
        };
        let listed: Option<bool> = row.get(3).db()?;
        let own = match listed {
            Some(enabled) => Some(ComponentRef {
                id: component.to_owned(),
                enabled,
                oci_tag: row.get(4).db()?,
                component_path: row.get(5).db()?,
            }),
            None => None,
        };
        let Some(values) = overlay::component_values(component, own.as_ref(), &matched) else {
            continue;
        };
        let above = |layer: &Layer| match layer {
            Layer::Cluster => true,
            Layer::Overlay(id) => {
                let at = matched.iter().position(|o| &o.id == id);
                promoted.is_none_or(|promoted| at > Some(promoted))
            }
            Layer::Catalog => false,
        };
        let (tag_above, path_above) = (above(&values.oci_tag.1), above(&values.component_path.1));
        let left_by_aborted: bool = row.get(7).db()?;
        let pinned = tag_above && !(values.oci_tag.1 == Layer::Cluster && left_by_aborted);
        found.push(Assigned {
            candidate: Candidate {
                id: row.get(0).db()?,
                cluster_dns: row.get(1).db()?,
                environment,
                labels,
                pinned,
            },
            own,
            values,
            tag_above,
            path_above,
        });
    }
    Ok(found)
}

/// A rollout request checked against the inventory, with its plan.
pub struct Planned {
    spec: RolloutSpec,
    using: Vec<Using>,
    plan: Plan,
}

/// Checks a request against the inventory and plans it (nothing is written).
pub fn plan(conn: &Connection, spec: RolloutSpec) -> Result<Planned> {
    rollout::validate(&spec)?;
    let Some(catalog) = components::get(conn, &spec.component)? else {
        return Err(AppError::Validation(format!(
            "component: no platform component with id '{}'",
            spec.component
        )));
    };
    let target = &spec.target;
    // The values the rollout replaces: the catalog's, or its overlay's for the component.
    let (layer, tag, path) = match &spec.overlay {
        None => (
            "the catalog".to_owned(),
            Some(catalog.oci_tag.clone()),
            Some(catalog.component_path.clone()),
        ),
        Some(id) => {
            let Some(found) = overlays::get(conn, id)? else {
                return Err(AppError::Validation(format!(
                    "overlay: no overlay with id '{id}'"
                )));
            };
            if target.component_version.is_some() {
                return Err(AppError::Validation(
                    "target.component_version: an overlay sets oci_tag and component_path only; \
                     leave component_version out or roll out in the catalog"
                        .into(),
                ));
            }
            let entry = found
                .platform_components
                .iter()
                .find(|e| e.id == spec.component);
            (
                format!("overlay '{id}'"),
                entry.and_then(|e| e.oci_tag.clone()),
                entry.and_then(|e| e.component_path.clone()),
            )
        }
    };
    let same = Some(&target.oci_tag) == tag.as_ref()
        && target
            .component_path
            .as_ref()
            .is_none_or(|p| Some(p) == path.as_ref())
        && target
            .component_version
            .as_ref()
            .is_none_or(|v| *v == catalog.component_version);
    if same {
        return Err(AppError::Validation(format!(
            "target: {layer} already has these values for '{}'; nothing to roll out",
            spec.component
        )));
    }
    let using = using(conn, &spec.component, spec.overlay.as_deref())?;
    let mut problems = Vec::new();
    for (index, wave) in spec.waves.iter().enumerate() {
        for id in &wave.clusters {
            if !using.iter().any(|u| &u.candidate.id == id) {
                problems.push(format!(
                    "waves[{index}].clusters: '{id}' is not a cluster with '{}' enabled{}",
                    spec.component,
                    spec.overlay
                        .as_ref()
                        .map_or(String::new(), |o| format!(" that overlay '{o}' matches"))
                ));
            }
        }
    }
    if !problems.is_empty() {
        return Err(AppError::Validation(problems.join("; ")));
    }
    let candidates: Vec<Candidate> = using.iter().map(|u| u.candidate.clone()).collect();
    let plan = Plan::new(&spec, &candidates);
    if plan.steps.is_empty() {
        return Err(AppError::Validation(format!(
            "no wave selects a cluster to move: {} cluster(s) have '{}' enabled, {} pin its \
             oci_tag themselves or through an overlay (set include_pinned to move them), {} are \
             not selected by any wave",
            using.len(),
            spec.component,
            plan.pinned.len(),
            plan.unselected.len()
        )));
    }
    Ok(Planned { spec, using, plan })
}

/// Stores a planned rollout (state `planned`).
pub fn insert(tx: &Connection, planned: &Planned, who: &str, now: i64) -> Result<()> {
    let spec = &planned.spec;
    if tx
        .prepare_cached("SELECT 1 FROM rollouts WHERE id = ?1")
        .db()?
        .exists([&spec.id])
        .db()?
    {
        return Err(AppError::Conflict(format!(
            "rollout '{}' exists already; rollouts keep their history, so pick a new id",
            spec.id
        )));
    }
    if let Some((other, state)) = active_for(tx, &spec.component)? {
        return Err(AppError::Conflict(format!(
            "component '{}' already has an active rollout '{other}' ({}): one at a time",
            spec.component,
            state.as_str()
        )));
    }
    let text = spec.to_json().unwrap_or_default().to_string();
    tx.prepare_cached(
        "INSERT INTO rollouts (id, component, spec, state, created_at) VALUES (?1, ?2, ?3, 'planned', ?4)",
    )
    .db()?
    .execute(params![spec.id, spec.component, text, now])
    .db()?;
    let mut step_stmt = tx
        .prepare_cached(
            "INSERT INTO rollout_steps (rollout_id, step, wave, state) VALUES (?1, ?2, ?3, 'pending')",
        )
        .db()?;
    let mut cluster_stmt = tx
        .prepare_cached(
            "INSERT INTO rollout_clusters (rollout_id, cluster_id, cluster_dns, step, state, \
             planned_oci_tag, planned_component_path) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )
        .db()?;
    let mut add = |index: usize, step: Option<usize>, state: ClusterState| -> Result<()> {
        let u = &planned.using[index];
        cluster_stmt
            .execute(params![
                spec.id,
                u.candidate.id,
                u.candidate.cluster_dns,
                step.map(|s| s as i64),
                state.as_str(),
                u.oci_tag,
                u.component_path
            ])
            .map(drop)
            .db()
    };
    for (number, step) in planned.plan.steps.iter().enumerate() {
        step_stmt
            .execute(params![spec.id, number as i64, step.wave as i64])
            .db()?;
        for &index in &step.clusters {
            add(index, Some(number), ClusterState::Pending)?;
        }
    }
    for &index in &planned.plan.pinned {
        add(index, None, ClusterState::Pinned)?;
    }
    for &index in &planned.plan.unselected {
        add(index, None, ClusterState::Unselected)?;
    }
    let moving: usize = planned.plan.steps.iter().map(|s| s.clusters.len()).sum();
    note(
        tx,
        &spec.id,
        now,
        RolloutState::Planned,
        None,
        who,
        &format!(
            "planned: {} step(s) moving {moving} cluster(s) to oci_tag '{}'; {} pinned, {} unselected",
            planned.plan.steps.len(),
            spec.target.oci_tag,
            planned.plan.pinned.len(),
            planned.plan.unselected.len()
        ),
    )
}

/// Appends to the rollout's transitions.
pub(super) fn note(
    tx: &Connection,
    id: &str,
    at: i64,
    state: RolloutState,
    step: Option<u32>,
    who: &str,
    reason: &str,
) -> Result<()> {
    tx.prepare_cached(
        "INSERT INTO rollout_transitions (rollout_id, seq, at, state, step, actor, reason) \
         VALUES (?1, (SELECT coalesce(max(seq), 0) + 1 FROM rollout_transitions WHERE rollout_id = ?1), \
         ?2, ?3, ?4, ?5, ?6)",
    )
    .db()?
    .execute(params![id, at, state.as_str(), step, who, reason])
    .db()?;
    tracing::info!(
        rollout = id,
        state = state.as_str(),
        step,
        actor = who,
        reason,
        "rollout transition"
    );
    Ok(())
}
