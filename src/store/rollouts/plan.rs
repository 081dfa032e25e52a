//! Planning a rollout against the inventory, and storing the plan.

use poem_openapi::types::ToJSON;
use rusqlite::{Connection, params};

use super::active_for;
use crate::domain::model::Environment;
use crate::domain::rollout::{self, Candidate, ClusterState, Plan, RolloutSpec, RolloutState};
use crate::error::{AppError, Result};
use crate::store::{SqlResultExt, components};

// ---------------------------------------------------------------------------------------
// Planning

/// A cluster that has the component enabled, with its own overrides. An `oci_tag` override
/// pins the cluster, unless an aborted rollout of the component left it there (the cluster
/// is still on that rollout's target: a later rollout moves it on).
pub(super) struct Using {
    candidate: Candidate,
    oci_tag: Option<String>,
    component_path: Option<String>,
}

pub(super) fn using(conn: &Connection, component: &str) -> Result<Vec<Using>> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT c.id, c.cluster_dns, c.environment, cc.oci_tag, cc.component_path, \
             (SELECT json_group_object(l.key, l.value) FROM cluster_labels l WHERE l.cluster_id = c.id), \
             EXISTS (SELECT 1 FROM rollout_clusters rc JOIN rollouts r ON r.id = rc.rollout_id \
               WHERE r.component = ?1 AND r.state = 'aborted' AND rc.cluster_id = c.id AND rc.changed = 1 \
               AND rc.state NOT IN ('rolled_back', 'pinned') \
               AND cc.oci_tag IS json_extract(r.spec, '$.target.oci_tag')) \
             FROM cluster_components cc JOIN clusters c ON c.id = cc.cluster_id \
             WHERE cc.component_id = ?1 AND cc.enabled = 1 ORDER BY c.id",
        )
        .db()?;
    let rows = stmt
        .query_map([component], |row| {
            let oci_tag: Option<String> = row.get(3)?;
            let labels: Option<String> = row.get(5)?;
            let left_by_aborted: bool = row.get(6)?;
            let environment: String = row.get(2)?;
            Ok(Using {
                candidate: Candidate {
                    id: row.get(0)?,
                    cluster_dns: row.get(1)?,
                    environment: Environment::parse(&environment).unwrap_or(Environment::Dev),
                    labels: labels
                        .and_then(|text| serde_json::from_str(&text).ok())
                        .unwrap_or_default(),
                    pinned: oci_tag.is_some() && !left_by_aborted,
                },
                oci_tag,
                component_path: row.get(4)?,
            })
        })
        .db()?;
    rows.collect::<rusqlite::Result<_>>().db()
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
    let same = target.oci_tag == catalog.oci_tag
        && target
            .component_path
            .as_ref()
            .is_none_or(|p| *p == catalog.component_path)
        && target
            .component_version
            .as_ref()
            .is_none_or(|v| *v == catalog.component_version);
    if same {
        return Err(AppError::Validation(format!(
            "target: the catalog already has these values for '{}'; nothing to roll out",
            spec.component
        )));
    }
    let using = using(conn, &spec.component)?;
    let mut problems = Vec::new();
    for (index, wave) in spec.waves.iter().enumerate() {
        for id in &wave.clusters {
            if !using.iter().any(|u| &u.candidate.id == id) {
                problems.push(format!(
                    "waves[{index}].clusters: '{id}' is not a cluster with '{}' enabled",
                    spec.component
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
            "no wave selects a cluster to move: {} cluster(s) have '{}' enabled, {} pin their own \
             oci_tag (set include_pinned to move them), {} are not selected by any wave",
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
