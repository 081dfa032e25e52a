//! Progressive rollouts in SQLite (contract §10), and the controller that moves them.
//!
//! Every transition is one transaction: a step's writes to the clusters, a rollback and the
//! promotion are inventory writes through the one write pipeline (actor `rollout:<id>`) that
//! also move the rollout's own rows; gate verdicts and pauses are plain writes. Each one
//! re-reads, inside its transaction, that the rollout still stands where the decision was
//! made, so a decision is applied once even when a verb or a second process got there first,
//! and a process killed at any moment resumes from the rows.
//!
//! Times are Unix seconds in the rows; the controller is handed `now`, so tests can run a
//! rollout on a clock of their own.

use std::collections::HashMap;

use poem_openapi::types::{ParseFromJSON, ToJSON};
use rusqlite::{Connection, OptionalExtension, Row, params};

use super::audit::Change;
use super::polls::PollTracker;
use super::reports::{self, Scope};
use super::write::Pipeline;
use super::{SqlResultExt, Store, WriteRequest, components};
use crate::domain::encode::Feed;
use crate::domain::model::{Cluster, Environment, PlatformComponent};
use crate::domain::report::{State, Via, format_timestamp};
use crate::domain::rollout::{
    self, Candidate, ClusterCounts, ClusterState, Gate, KeptValues, Observation, OnFailure, Plan,
    Rollout, RolloutCluster, RolloutSpec, RolloutState, RolloutStep, StepState, Transition, Verb,
    Verdict,
};
use crate::error::{AppError, Result};

/// The actor of the controller's own transitions.
pub const CONTROLLER: &str = "rollout";

/// The audit actor of a rollout's writes.
pub fn actor(id: &str) -> String {
    format!("rollout:{id}")
}

/// A catalog write to a component held by an active rollout is refused, unless the rollout
/// itself makes it (its promotion).
pub fn check_catalog_write(conn: &Connection, component: &str, writer: &str) -> Result<()> {
    let Some((id, state)) = active_for(conn, component)? else {
        return Ok(());
    };
    if writer == actor(&id) {
        return Ok(());
    }
    Err(AppError::Conflict(format!(
        "platform component '{component}' is being rolled out by rollout '{id}' ({}): catalog \
         writes to it wait until the rollout ends; abort or roll it back to change it now",
        state.as_str()
    )))
}

fn active_for(conn: &Connection, component: &str) -> Result<Option<(String, RolloutState)>> {
    conn.prepare_cached(&format!(
        "SELECT id, state FROM rollouts WHERE component = ?1 AND state IN {}",
        RolloutState::ACTIVE_SQL
    ))
    .db()?
    .query_row([component], |row| {
        Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?))
    })
    .optional()
    .db()
    .map(|found| found.map(|(id, state)| (id, parse_state(&state))))
}

fn parse_state(text: &str) -> RolloutState {
    RolloutState::parse(text).unwrap_or(RolloutState::Aborted)
}

fn now_seconds() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------------------
// Planning

/// A cluster that has the component enabled, with its own overrides. An `oci_tag` override
/// pins the cluster, unless an aborted rollout of the component left it there (the cluster
/// is still on that rollout's target: a later rollout moves it on).
struct Using {
    candidate: Candidate,
    oci_tag: Option<String>,
    component_path: Option<String>,
}

fn using(conn: &Connection, component: &str) -> Result<Vec<Using>> {
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
fn note(
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

// ---------------------------------------------------------------------------------------
// Reading

/// A rollout's rows.
#[derive(Clone, Debug)]
struct Loaded {
    spec: RolloutSpec,
    state: RolloutState,
    current_step: Option<u32>,
    created_at: i64,
    started_at: Option<i64>,
    finished_at: Option<i64>,
    kept: Vec<KeptValues>,
    steps: Vec<StepRow>,
    clusters: Vec<ClusterRow>,
}

#[derive(Clone, Debug, PartialEq)]
struct StepRow {
    step: u32,
    wave: u32,
    state: StepState,
    started_at: Option<i64>,
    deadline_at: Option<i64>,
    passed_at: Option<i64>,
    bake_until: Option<i64>,
}

#[derive(Clone, Debug)]
struct ClusterRow {
    cluster_id: String,
    cluster_dns: String,
    step: Option<u32>,
    state: ClusterState,
    reason: Option<String>,
    message: Option<String>,
    changed: bool,
    planned: Overrides,
    previous: Overrides,
}

/// A cluster's own values for the component (`None`: the catalog's).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Overrides {
    oci_tag: Option<String>,
    component_path: Option<String>,
}

fn load(conn: &Connection, id: &str, with_clusters: bool) -> Result<Option<Loaded>> {
    let row = conn
        .prepare_cached(
            "SELECT spec, state, current_step, created_at, started_at, finished_at, kept \
             FROM rollouts WHERE id = ?1",
        )
        .db()?
        .query_row([id], |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, Option<u32>>(2)?,
                row.get::<_, i64>(3)?,
                row.get::<_, Option<i64>>(4)?,
                row.get::<_, Option<i64>>(5)?,
                row.get::<_, Option<String>>(6)?,
            ))
        })
        .optional()
        .db()?;
    let Some((spec, state, current_step, created_at, started_at, finished_at, kept)) = row else {
        return Ok(None);
    };
    let spec = serde_json::from_str(&spec)
        .ok()
        .and_then(|value| RolloutSpec::parse_from_json(Some(value)).ok())
        .ok_or_else(|| AppError::Internal(format!("rollout '{id}' holds an unreadable spec")))?;
    let kept = kept
        .and_then(|text| serde_json::from_str(&text).ok())
        .and_then(|value| Vec::<KeptValues>::parse_from_json(Some(value)).ok())
        .unwrap_or_default();
    let steps = conn
        .prepare_cached(
            "SELECT step, wave, state, started_at, deadline_at, passed_at, bake_until \
             FROM rollout_steps WHERE rollout_id = ?1 ORDER BY step",
        )
        .db()?
        .query_map([id], |row| {
            let state: String = row.get(2)?;
            Ok(StepRow {
                step: row.get(0)?,
                wave: row.get(1)?,
                state: StepState::parse(&state).unwrap_or(StepState::Pending),
                started_at: row.get(3)?,
                deadline_at: row.get(4)?,
                passed_at: row.get(5)?,
                bake_until: row.get(6)?,
            })
        })
        .db()?
        .collect::<rusqlite::Result<Vec<_>>>()
        .db()?;
    let clusters = if with_clusters {
        conn.prepare_cached(
            "SELECT cluster_id, cluster_dns, step, state, reason, message, changed, \
             planned_oci_tag, planned_component_path, previous_oci_tag, previous_component_path \
             FROM rollout_clusters WHERE rollout_id = ?1 ORDER BY step IS NULL, step, cluster_id",
        )
        .db()?
        .query_map([id], cluster_row)
        .db()?
        .collect::<rusqlite::Result<Vec<_>>>()
        .db()?
    } else {
        Vec::new()
    };
    Ok(Some(Loaded {
        spec,
        state: parse_state(&state),
        current_step,
        created_at,
        started_at,
        finished_at,
        kept,
        steps,
        clusters,
    }))
}

fn cluster_row(row: &Row) -> rusqlite::Result<ClusterRow> {
    let state: String = row.get(3)?;
    Ok(ClusterRow {
        cluster_id: row.get(0)?,
        cluster_dns: row.get(1)?,
        step: row.get(2)?,
        state: ClusterState::parse(&state).unwrap_or(ClusterState::Pending),
        reason: row.get(4)?,
        message: row.get(5)?,
        changed: row.get(6)?,
        planned: Overrides {
            oci_tag: row.get(7)?,
            component_path: row.get(8)?,
        },
        previous: Overrides {
            oci_tag: row.get(9)?,
            component_path: row.get(10)?,
        },
    })
}

fn transitions(conn: &Connection, id: &str) -> Result<Vec<Transition>> {
    conn.prepare_cached(
        "SELECT at, state, step, actor, reason FROM rollout_transitions WHERE rollout_id = ?1 ORDER BY seq",
    )
    .db()?
    .query_map([id], |row| {
        let state: String = row.get(1)?;
        Ok(Transition {
            at: format_timestamp(row.get(0)?),
            state: parse_state(&state),
            step: row.get(2)?,
            actor: row.get(3)?,
            reason: row.get(4)?,
        })
    })
    .db()?
    .collect::<rusqlite::Result<_>>()
    .db()
}

/// A rollout as the API shows it; `polls` and `now` say which pending clusters are stale.
pub fn get(conn: &Connection, id: &str, polls: &PollTracker, now: u64) -> Result<Option<Rollout>> {
    let Some(loaded) = load(conn, id, true)? else {
        return Ok(None);
    };
    Ok(Some(view(conn, loaded, Some((polls, now)))?))
}

/// Every rollout, newest first, without their clusters.
pub fn list(conn: &Connection) -> Result<Vec<Rollout>> {
    let ids: Vec<String> = conn
        .prepare_cached("SELECT id FROM rollouts ORDER BY created_at DESC, id")
        .db()?
        .query_map([], |row| row.get(0))
        .db()?
        .collect::<rusqlite::Result<_>>()
        .db()?;
    let mut counts = conn
        .prepare_cached(
            "SELECT step, state, count(*) FROM rollout_clusters WHERE rollout_id = ?1 GROUP BY step, state",
        )
        .db()?;
    let mut listed = Vec::with_capacity(ids.len());
    for id in ids {
        let Some(loaded) = load(conn, &id, false)? else {
            continue;
        };
        let mut rollout = view(conn, loaded, None)?;
        let rows = counts
            .query_map([&id], |row| {
                Ok((
                    row.get::<_, Option<u32>>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, i64>(2)?.max(0) as u64,
                ))
            })
            .db()?;
        for row in rows {
            let (step, state, count) = row.db()?;
            let state = ClusterState::parse(&state).unwrap_or(ClusterState::Pending);
            rollout.counts.add_n(state, count);
            if let Some(step) = step.and_then(|s| rollout.steps.get_mut(s as usize)) {
                step.counts.add_n(state, count);
            }
        }
        listed.push(rollout);
    }
    Ok(listed)
}

fn view(
    conn: &Connection,
    loaded: Loaded,
    stale_at: Option<(&PollTracker, u64)>,
) -> Result<Rollout> {
    let transitions = transitions(conn, &loaded.spec.id)?;
    let time = |t: Option<i64>| t.map(format_timestamp);
    let mut steps: Vec<RolloutStep> = loaded
        .steps
        .iter()
        .map(|s| RolloutStep {
            step: s.step,
            wave: s.wave,
            state: s.state,
            started_at: time(s.started_at),
            deadline_at: time(s.deadline_at),
            passed_at: time(s.passed_at),
            bake_until: time(s.bake_until),
            counts: ClusterCounts::default(),
            clusters: Vec::new(),
        })
        .collect();
    let mut counts = ClusterCounts::default();
    let mut not_in_steps = Vec::new();
    let mut stale = Vec::new();
    for c in loaded.clusters {
        counts.add(c.state);
        let skipped_stale = c.state == ClusterState::Skipped && c.reason.as_deref() == Some(STALE);
        let stale_now = c.state == ClusterState::Pending
            && stale_at.is_some_and(|(polls, now)| polls.is_stale(&polls.get(&c.cluster_dns), now));
        if skipped_stale || stale_now {
            stale.push(c.cluster_id.clone());
        }
        let listed = RolloutCluster {
            id: c.cluster_id,
            cluster_dns: c.cluster_dns,
            state: c.state,
            reason: c.reason,
            message: c.message,
        };
        match c.step.and_then(|s| steps.get_mut(s as usize)) {
            Some(step) => {
                step.counts.add(listed.state);
                step.clusters.push(listed);
            }
            None => not_in_steps.push(listed),
        }
    }
    Ok(Rollout {
        spec: loaded.spec,
        state: loaded.state,
        current_step: loaded.current_step.filter(|_| loaded.state.is_active()),
        created_at: format_timestamp(loaded.created_at),
        started_at: time(loaded.started_at),
        finished_at: time(loaded.finished_at),
        counts,
        steps,
        not_in_steps,
        stale,
        kept_previous: loaded.kept,
        transitions,
    })
}

/// The reason of a cluster skipped as stale.
const STALE: &str = "stale";

/// What `/metrics` shows of rollouts: how many per state, and for each active rollout its
/// current step and its clusters per state.
#[derive(Debug, Default)]
pub struct Gauges {
    pub by_state: Vec<(RolloutState, u64)>,
    pub active: Vec<ActiveGauges>,
}

#[derive(Debug)]
pub struct ActiveGauges {
    pub id: String,
    pub current_step: Option<u32>,
    pub clusters: ClusterCounts,
}

pub fn gauges(conn: &Connection) -> Result<Gauges> {
    let mut by_state: HashMap<String, u64> = conn
        .prepare_cached("SELECT state, count(*) FROM rollouts GROUP BY state")
        .db()?
        .query_map([], |row| {
            Ok((row.get(0)?, row.get::<_, i64>(1)?.max(0) as u64))
        })
        .db()?
        .collect::<rusqlite::Result<_>>()
        .db()?;
    let mut gauges = Gauges {
        by_state: RolloutState::ALL
            .into_iter()
            .map(|state| (state, by_state.remove(state.as_str()).unwrap_or(0)))
            .collect(),
        active: Vec::new(),
    };
    let mut stmt = conn
        .prepare_cached(&format!(
            "SELECT r.id, r.current_step, c.state, count(*) FROM rollouts r \
             JOIN rollout_clusters c ON c.rollout_id = r.id \
             WHERE r.state IN {} GROUP BY r.id, c.state ORDER BY r.id",
            RolloutState::ACTIVE_SQL
        ))
        .db()?;
    let rows = stmt
        .query_map([], |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, Option<u32>>(1)?,
                row.get::<_, String>(2)?,
                row.get::<_, i64>(3)?.max(0) as u64,
            ))
        })
        .db()?;
    for row in rows {
        let (id, current_step, state, n) = row.db()?;
        if gauges.active.last().is_none_or(|a| a.id != id) {
            gauges.active.push(ActiveGauges {
                id,
                current_step,
                clusters: ClusterCounts::default(),
            });
        }
        if let (Some(active), Some(state)) = (gauges.active.last_mut(), ClusterState::parse(&state))
        {
            active.clusters.add_n(state, n);
        }
    }
    Ok(gauges)
}

// ---------------------------------------------------------------------------------------
// What the controller sees of a cluster

/// A cluster's assignment of the component now, and what it reported.
#[derive(Clone, Debug, Default)]
struct Seen {
    /// `None`: the cluster or its assignment of the component is gone.
    assignment: Option<(bool, Overrides)>,
    cluster_dns: Option<String>,
    state: Option<State>,
    reason: Option<String>,
    message: Option<String>,
    via: Option<Via>,
}

fn observe(
    conn: &Connection,
    component: &str,
    polls: &PollTracker,
    now: u64,
) -> Result<HashMap<String, Seen>> {
    let mut seen: HashMap<String, Seen> = HashMap::new();
    let mut stmt = conn
        .prepare_cached(
            "SELECT cluster_id, enabled, oci_tag, component_path FROM cluster_components WHERE component_id = ?1",
        )
        .db()?;
    let rows = stmt
        .query_map([component], |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, bool>(1)?,
                Overrides {
                    oci_tag: row.get(2)?,
                    component_path: row.get(3)?,
                },
            ))
        })
        .db()?;
    for row in rows {
        let (id, enabled, overrides) = row.db()?;
        seen.entry(id).or_default().assignment = Some((enabled, overrides));
    }
    let scope = Scope {
        component: Some(component.to_owned()),
        ..Scope::default()
    };
    reports::for_each_component(conn, &scope, polls, now, |row| {
        if let Some(entry) = seen.get_mut(row.cluster_id) {
            entry.cluster_dns = Some(row.cluster_dns.to_owned());
            entry.state = Some(row.state);
            entry.reason = row.reason.map(str::to_owned);
            entry.message = row.message.map(str::to_owned);
            entry.via = row.via;
        }
    })?;
    Ok(seen)
}

/// The overrides a cluster has while the rollout holds it: the target where it sets one.
fn moved(target: &rollout::RolloutTarget, previous: &Overrides) -> Overrides {
    Overrides {
        oci_tag: Some(target.oci_tag.clone()),
        component_path: target
            .component_path
            .clone()
            .or_else(|| previous.component_path.clone()),
    }
}

// ---------------------------------------------------------------------------------------
// The controller's decisions

/// What one look at a running rollout decided.
#[derive(Debug, Default)]
struct Decision {
    /// Clusters whose state changes: id → (state, reason, message).
    clusters: Vec<(String, ClusterState, Option<String>, Option<String>)>,
    /// The current step moves to this state.
    step: Option<StepState>,
    next: Next,
    notes: Vec<(Option<u32>, String)>,
}

#[derive(Debug, Default, PartialEq)]
enum Next {
    #[default]
    Stay,
    StartStep(u32),
    Promote,
    /// Too many failures in a step: pause or roll back, with the reason.
    Fail(String),
}

fn decide(
    loaded: &Loaded,
    seen: &HashMap<String, Seen>,
    polls: &PollTracker,
    only_cluster_reports: bool,
    now: i64,
) -> Decision {
    let mut decision = Decision::default();
    let current = loaded.current_step.unwrap_or(0);
    let Some(step) = loaded.steps.get(current as usize) else {
        decision.next = Next::Promote;
        return decision;
    };
    if step.state == StepState::Pending {
        decision.next = Next::StartStep(current);
        return decision;
    }
    let spec = &loaded.spec;
    let started = |s: u32| loaded.steps.get(s as usize);
    let mut failures: HashMap<u32, Vec<String>> = HashMap::new();
    let mut progressing = 0;
    for c in &loaded.clusters {
        let Some(number) = c.step.filter(|s| *s <= current) else {
            continue;
        };
        let Some(s) = started(number) else { continue };
        let mut state = c.state;
        let live = c.changed
            && matches!(
                c.state,
                ClusterState::Progressing | ClusterState::Passed | ClusterState::Failed
            );
        if live {
            let entry = seen.get(&c.cluster_id);
            let assignment = entry.and_then(|e| e.assignment.as_ref());
            let change = match assignment {
                None => Some((
                    ClusterState::Skipped,
                    Some("gone: the cluster or its assignment of the component was removed".into()),
                    None,
                )),
                Some((false, _)) => Some((
                    ClusterState::Skipped,
                    Some("disabled: the component was disabled on the cluster".into()),
                    None,
                )),
                Some((true, now_overrides))
                    if *now_overrides != moved(&spec.target, &c.previous) =>
                {
                    Some((
                        ClusterState::Pinned,
                        Some("edited by hand during the rollout; it keeps the edit".into()),
                        None,
                    ))
                }
                Some(_) => {
                    let entry = entry.cloned().unwrap_or_default();
                    let dns = entry.cluster_dns.as_deref().unwrap_or(&c.cluster_dns);
                    let observation = Observation {
                        state: entry.state.unwrap_or(State::Unknown),
                        reason: entry.reason.as_deref(),
                        message: entry.message.as_deref(),
                        by_cluster: entry.via == Some(Via::Cluster),
                        last_poll: polls.get(dns)[Feed::PlatformComponents.index()]
                            .as_ref()
                            .map(|p| p.at),
                    };
                    let started_at = s.started_at.unwrap_or(now).max(0) as u64;
                    let deadline = s.deadline_at.unwrap_or(now).max(0) as u64;
                    match c.state {
                        ClusterState::Progressing => match rollout::judge(
                            spec.gate,
                            &observation,
                            only_cluster_reports,
                            started_at,
                            deadline,
                            now.max(0) as u64,
                        ) {
                            Verdict::Passed => Some((ClusterState::Passed, None, None)),
                            Verdict::Failed { reason, message } => {
                                Some((ClusterState::Failed, Some(reason), Some(message)))
                            }
                            Verdict::Waiting => None,
                        },
                        // A cluster that passed and then reports a failure is a new failure.
                        ClusterState::Passed
                            if observation.state == State::Failed
                                && (observation.by_cluster || !only_cluster_reports) =>
                        {
                            Some((
                                ClusterState::Failed,
                                observation.reason.map(str::to_owned),
                                observation.message.map(str::to_owned),
                            ))
                        }
                        _ => None,
                    }
                }
            };
            if let Some((to, reason, message)) = change {
                state = to;
                decision
                    .clusters
                    .push((c.cluster_id.clone(), to, reason, message));
            }
        }
        match state {
            ClusterState::Failed => failures
                .entry(number)
                .or_default()
                .push(c.cluster_id.clone()),
            ClusterState::Progressing if number == current => progressing += 1,
            _ => {}
        }
    }
    let mut failed_steps: Vec<_> = failures
        .iter()
        .filter(|(_, ids)| ids.len() as u64 > u64::from(spec.max_failures))
        .collect();
    failed_steps.sort();
    if let Some((number, ids)) = failed_steps.first() {
        let named: Vec<String> = ids
            .iter()
            .take(5)
            .map(|id| {
                let why = decision
                    .clusters
                    .iter()
                    .find(|(c, ..)| c == id)
                    .and_then(|(_, _, reason, _)| reason.clone())
                    .or_else(|| {
                        loaded
                            .clusters
                            .iter()
                            .find(|c| &c.cluster_id == id)
                            .and_then(|c| c.reason.clone())
                    })
                    .unwrap_or_default();
                format!("{id} ({why})")
            })
            .collect();
        decision.next = Next::Fail(format!(
            "{} failure(s) in step {number}, more than max_failures {}: {}{}",
            ids.len(),
            spec.max_failures,
            named.join(", "),
            if ids.len() > 5 { ", …" } else { "" }
        ));
        decision.step = Some(StepState::Failed);
        return decision;
    }
    match step.state {
        StepState::Waiting if progressing == 0 => {
            decision.step = Some(StepState::Baking);
            decision.notes.push((
                Some(current),
                format!(
                    "step {current} passed its gate ({}); baking {} s",
                    match spec.gate {
                        Gate::Reported => "every cluster converged on the target",
                        Gate::Polled => "every cluster polled its feed",
                    },
                    spec.bake_seconds
                ),
            ));
        }
        StepState::Baking if step.bake_until.is_none_or(|until| now >= until) => {
            decision.step = Some(StepState::Passed);
            decision
                .notes
                .push((Some(current), format!("step {current} passed")));
            let next = current + 1;
            decision.next = if (next as usize) < loaded.steps.len() {
                Next::StartStep(next)
            } else {
                Next::Promote
            };
        }
        _ => {}
    }
    decision
}

// ---------------------------------------------------------------------------------------
// Writing transitions

/// Fails unless the rollout is still where the decision found it.
fn still(tx: &Connection, loaded: &Loaded) -> Result<()> {
    let now: Option<(String, Option<u32>)> = tx
        .prepare_cached("SELECT state, current_step FROM rollouts WHERE id = ?1")
        .db()?
        .query_row([&loaded.spec.id], |row| Ok((row.get(0)?, row.get(1)?)))
        .optional()
        .db()?;
    let step_state = |step: u32| -> Result<Option<String>> {
        tx.prepare_cached("SELECT state FROM rollout_steps WHERE rollout_id = ?1 AND step = ?2")
            .db()?
            .query_row(params![loaded.spec.id, step], |row| row.get(0))
            .optional()
            .db()
    };
    let current = loaded.current_step.unwrap_or(0);
    let expected_step = loaded.steps.get(current as usize).map(|s| s.state.as_str());
    let same = now.as_ref().is_some_and(|(state, step)| {
        parse_state(state) == loaded.state && *step == loaded.current_step
    }) && step_state(current)?.as_deref() == expected_step;
    if same {
        Ok(())
    } else {
        Err(AppError::PreconditionFailed(format!(
            "rollout '{}' moved on meanwhile",
            loaded.spec.id
        )))
    }
}

fn set_cluster(
    tx: &Connection,
    id: &str,
    cluster: &str,
    state: ClusterState,
    reason: Option<&str>,
    message: Option<&str>,
) -> Result<()> {
    tx.prepare_cached(
        "UPDATE rollout_clusters SET state = ?3, reason = ?4, message = ?5 \
         WHERE rollout_id = ?1 AND cluster_id = ?2",
    )
    .db()?
    .execute(params![id, cluster, state.as_str(), reason, message])
    .db()?;
    Ok(())
}

fn set_state(tx: &Connection, id: &str, state: RolloutState, now: i64) -> Result<()> {
    let finished = (!state.is_active()).then_some(now);
    tx.prepare_cached(
        "UPDATE rollouts SET state = ?2, finished_at = coalesce(?3, finished_at) WHERE id = ?1",
    )
    .db()?
    .execute(params![id, state.as_str(), finished])
    .db()?;
    Ok(())
}

fn set_step(
    tx: &Connection,
    id: &str,
    step: u32,
    state: StepState,
    spec: &RolloutSpec,
    now: i64,
) -> Result<()> {
    let (timeout, bake) = (spec.wave_timeout_seconds as i64, spec.bake_seconds as i64);
    let mut stmt = match state {
        StepState::Waiting => tx.prepare_cached(
            "UPDATE rollout_steps SET state = 'waiting', started_at = coalesce(started_at, ?3), \
             deadline_at = ?4 WHERE rollout_id = ?1 AND step = ?2",
        ),
        StepState::Baking => tx.prepare_cached(
            "UPDATE rollout_steps SET state = 'baking', passed_at = ?3, bake_until = ?4 \
             WHERE rollout_id = ?1 AND step = ?2",
        ),
        _ => tx.prepare_cached(
            "UPDATE rollout_steps SET state = ?3 WHERE rollout_id = ?1 AND step = ?2",
        ),
    }
    .db()?;
    match state {
        StepState::Waiting => stmt.execute(params![id, step, now, now + timeout]),
        StepState::Baking => stmt.execute(params![id, step, now, now + bake]),
        _ => stmt.execute(params![id, step, state.as_str()]),
    }
    .db()?;
    Ok(())
}

/// The gate verdicts and step change of a decision (inside the transaction of its action).
fn record_decision(tx: &Connection, loaded: &Loaded, decision: &Decision, now: i64) -> Result<()> {
    let id = &loaded.spec.id;
    for (cluster, state, reason, message) in &decision.clusters {
        set_cluster(
            tx,
            id,
            cluster,
            *state,
            reason.as_deref(),
            message.as_deref(),
        )?;
    }
    let current = loaded.current_step.unwrap_or(0);
    if let Some(state) = decision.step {
        set_step(tx, id, current, state, &loaded.spec, now)?;
    }
    for (step, reason) in &decision.notes {
        note(tx, id, now, loaded.state, *step, CONTROLLER, reason)?;
    }
    Ok(())
}

/// The component's assignment on one cluster.
fn assignment(
    tx: &Connection,
    cluster: &str,
    component: &str,
) -> Result<Option<(bool, Overrides)>> {
    tx.prepare_cached(
        "SELECT enabled, oci_tag, component_path FROM cluster_components WHERE cluster_id = ?1 AND component_id = ?2",
    )
    .db()?
    .query_row([cluster, component], |row| {
        Ok((
            row.get(0)?,
            Overrides {
                oci_tag: row.get(1)?,
                component_path: row.get(2)?,
            },
        ))
    })
    .optional()
    .db()
}

/// Sets a cluster's overrides of the component, audited as a cluster write. The cluster is
/// read once and its new state made in memory (a promotion writes every cluster using the
/// component: a second read per cluster doubled its time).
fn write_overrides(
    pipeline: &mut Pipeline<'_>,
    cluster: &str,
    component: &str,
    values: &Overrides,
) -> Result<()> {
    let Some(mut stored) = super::clusters::get(pipeline.conn(), cluster)? else {
        return Ok(());
    };
    let before = stored.to_json();
    let Some(entry) = stored
        .platform_components
        .iter_mut()
        .find(|c| c.id == component)
    else {
        return Ok(());
    };
    entry.oci_tag = values.oci_tag.clone();
    entry.component_path = values.component_path.clone();
    pipeline
        .conn()
        .prepare_cached(
            "UPDATE cluster_components SET oci_tag = ?3, component_path = ?4 \
             WHERE cluster_id = ?1 AND component_id = ?2",
        )
        .db()?
        .execute(params![
            cluster,
            component,
            values.oci_tag,
            values.component_path
        ])
        .db()?;
    pipeline.recorded_as::<Cluster>(cluster, before, &stored)
}

/// Gives the clusters of `step` the target (one inventory write), skipping those that are
/// stale, gone, disabled or edited by hand since the plan.
fn start_step(
    pipeline: &mut Pipeline<'_>,
    loaded: &Loaded,
    step: u32,
    polls: &PollTracker,
    now: i64,
) -> Result<()> {
    let spec = &loaded.spec;
    let id = &spec.id;
    let (mut moved_count, mut skipped) = (0, 0);
    for c in loaded
        .clusters
        .iter()
        .filter(|c| c.step == Some(step) && c.state == ClusterState::Pending)
    {
        let tx = pipeline.conn();
        let dns: Option<String> = tx
            .prepare_cached("SELECT cluster_dns FROM clusters WHERE id = ?1")
            .db()?
            .query_row([&c.cluster_id], |row| row.get(0))
            .optional()
            .db()?;
        let found = assignment(tx, &c.cluster_id, &spec.component)?;
        let skip = match (&dns, &found) {
            (None, _) | (_, None) => Some((
                ClusterState::Skipped,
                "gone: the cluster or its assignment of the component was removed".to_owned(),
            )),
            (_, Some((false, _))) => Some((
                ClusterState::Skipped,
                "disabled: the component is disabled on the cluster".to_owned(),
            )),
            (_, Some((true, overrides))) if *overrides != c.planned => Some((
                ClusterState::Pinned,
                "edited by hand since the rollout was planned; it keeps the edit".to_owned(),
            )),
            (Some(dns), _) if polls.is_stale(&polls.get(dns), now.max(0) as u64) => {
                Some((ClusterState::Skipped, STALE.to_owned()))
            }
            _ => None,
        };
        if let Some((state, reason)) = skip {
            set_cluster(
                pipeline.conn(),
                id,
                &c.cluster_id,
                state,
                Some(&reason),
                None,
            )?;
            skipped += 1;
            continue;
        }
        let previous = found.map(|(_, o)| o).unwrap_or_default();
        write_overrides(
            pipeline,
            &c.cluster_id,
            &spec.component,
            &moved(&spec.target, &previous),
        )?;
        pipeline
            .conn()
            .prepare_cached(
                "UPDATE rollout_clusters SET state = 'progressing', changed = 1, reason = NULL, message = NULL, \
                 previous_oci_tag = ?3, previous_component_path = ?4 WHERE rollout_id = ?1 AND cluster_id = ?2",
            )
            .db()?
            .execute(params![id, c.cluster_id, previous.oci_tag, previous.component_path])
            .db()?;
        moved_count += 1;
    }
    let tx = pipeline.conn();
    set_step(tx, id, step, StepState::Waiting, spec, now)?;
    tx.prepare_cached("UPDATE rollouts SET current_step = ?2 WHERE id = ?1")
        .db()?
        .execute(params![id, step])
        .db()?;
    let wave = loaded.steps.get(step as usize).map_or(0, |s| s.wave);
    note(
        tx,
        id,
        now,
        RolloutState::Running,
        Some(step),
        CONTROLLER,
        &format!(
            "step {step} (wave {wave}) started: {moved_count} cluster(s) given oci_tag '{}', {skipped} skipped",
            spec.target.oci_tag
        ),
    )
}

/// Gives every cluster the rollout moved (and that nobody edited since) its previous values
/// back, in the caller's inventory write.
fn roll_back(
    pipeline: &mut Pipeline<'_>,
    loaded: &Loaded,
    who: &str,
    reason: &str,
    now: i64,
) -> Result<()> {
    let spec = &loaded.spec;
    let mut restored = 0;
    for c in loaded.clusters.iter().filter(|c| {
        c.changed
            && !matches!(
                c.state,
                ClusterState::Pinned | ClusterState::RolledBack | ClusterState::Skipped
            )
    }) {
        match assignment(pipeline.conn(), &c.cluster_id, &spec.component)? {
            Some((_, overrides)) if overrides == moved(&spec.target, &c.previous) => {
                write_overrides(pipeline, &c.cluster_id, &spec.component, &c.previous)?;
                set_cluster(
                    pipeline.conn(),
                    &spec.id,
                    &c.cluster_id,
                    ClusterState::RolledBack,
                    None,
                    None,
                )?;
                restored += 1;
            }
            Some(_) => set_cluster(
                pipeline.conn(),
                &spec.id,
                &c.cluster_id,
                ClusterState::Pinned,
                Some("edited by hand during the rollout; it keeps the edit"),
                None,
            )?,
            None => set_cluster(
                pipeline.conn(),
                &spec.id,
                &c.cluster_id,
                ClusterState::Skipped,
                Some("gone: the cluster or its assignment of the component was removed"),
                None,
            )?,
        }
    }
    let tx = pipeline.conn();
    set_state(tx, &spec.id, RolloutState::RolledBack, now)?;
    note(
        tx,
        &spec.id,
        now,
        RolloutState::RolledBack,
        loaded.current_step,
        who,
        &format!("rolled back: {restored} cluster(s) got their previous values back; {reason}"),
    )
}

/// The last step passed: the catalog takes the target and the rollout's overrides go, in
/// one inventory write that leaves every feed as it is. Clusters the rollout did not move
/// keep their previous values as overrides.
fn promote(pipeline: &mut Pipeline<'_>, loaded: &Loaded, now: i64) -> Result<()> {
    let spec = &loaded.spec;
    let target = &spec.target;
    let catalog = components::get(pipeline.conn(), &spec.component)?.ok_or_else(|| {
        AppError::Conflict(format!("platform component '{}' is gone", spec.component))
    })?;
    let updated = PlatformComponent {
        oci_tag: target.oci_tag.clone(),
        component_path: target
            .component_path
            .clone()
            .unwrap_or_else(|| catalog.component_path.clone()),
        component_version: target
            .component_version
            .clone()
            .unwrap_or_else(|| catalog.component_version.clone()),
        ..catalog.clone()
    };
    pipeline
        .record::<PlatformComponent, _>(&spec.component, |tx| components::update(tx, &updated))?;
    let rows: HashMap<&str, &ClusterRow> = loaded
        .clusters
        .iter()
        .map(|c| (c.cluster_id.as_str(), c))
        .collect();
    let assignments: Vec<(String, Overrides)> = pipeline
        .conn()
        .prepare_cached(
            "SELECT cluster_id, oci_tag, component_path FROM cluster_components WHERE component_id = ?1 ORDER BY cluster_id",
        )
        .db()?
        .query_map([&spec.component], |row| {
            Ok((
                row.get(0)?,
                Overrides {
                    oci_tag: row.get(1)?,
                    component_path: row.get(2)?,
                },
            ))
        })
        .db()?
        .collect::<rusqlite::Result<_>>()
        .db()?;
    let (mut removed, mut kept) = (0, Vec::new());
    for (cluster, current) in assignments {
        let ours = rows.get(cluster.as_str()).is_some_and(|c| {
            c.changed
                && matches!(
                    c.state,
                    ClusterState::Passed | ClusterState::Failed | ClusterState::Progressing
                )
                && current == moved(target, &c.previous)
        });
        let wanted = if ours {
            removed += 1;
            Overrides {
                oci_tag: None,
                component_path: if target.component_path.is_some() {
                    None
                } else {
                    current.component_path.clone()
                },
            }
        } else {
            let values = Overrides {
                oci_tag: current
                    .oci_tag
                    .clone()
                    .or_else(|| Some(catalog.oci_tag.clone())),
                component_path: match &target.component_path {
                    Some(_) => current
                        .component_path
                        .clone()
                        .or_else(|| Some(catalog.component_path.clone())),
                    None => current.component_path.clone(),
                },
            };
            if values != current {
                kept.push(KeptValues {
                    cluster: cluster.clone(),
                    oci_tag: values.oci_tag.clone().unwrap_or_default(),
                    component_path: values
                        .component_path
                        .clone()
                        .filter(|_| target.component_path.is_some()),
                });
            }
            values
        };
        if wanted != current {
            write_overrides(pipeline, &cluster, &spec.component, &wanted)?;
        }
    }
    let tx = pipeline.conn();
    let kept_json = kept.to_json().unwrap_or_default().to_string();
    tx.prepare_cached("UPDATE rollouts SET kept = ?2, current_step = NULL WHERE id = ?1")
        .db()?
        .execute(params![spec.id, kept_json])
        .db()?;
    set_state(tx, &spec.id, RolloutState::Succeeded, now)?;
    note(
        tx,
        &spec.id,
        now,
        RolloutState::Succeeded,
        None,
        CONTROLLER,
        &format!(
            "promoted: the catalog entry '{}' now has oci_tag '{}'; {removed} per-cluster override(s) \
             removed, {} cluster(s) keep their previous values as overrides",
            spec.component,
            target.oci_tag,
            kept.len()
        ),
    )
}

// ---------------------------------------------------------------------------------------
// The store's rollout operations

/// The inventory write of a rollout's step, rollback or promotion.
fn rollout_write(id: &str) -> WriteRequest {
    WriteRequest::new(Change {
        actor: actor(id),
        method: "PUT",
    })
}

impl Store {
    /// `POST /rollouts`: plans and stores a rollout (`dry_run`: plans, stores nothing).
    pub async fn create_rollout(
        &self,
        spec: RolloutSpec,
        who: String,
        dry_run: bool,
    ) -> Result<Rollout> {
        let polls = self.polls.clone();
        self.on_writer(move |_, conn| {
            let tx = conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .db()?;
            let id = spec.id.clone();
            let planned = plan(&tx, spec)?;
            let now = now_seconds();
            insert(&tx, &planned, &who, now)?;
            let rollout = get(&tx, &id, &polls, now as u64)?
                .ok_or_else(|| AppError::Internal(format!("rollout '{id}' vanished")))?;
            if dry_run {
                tx.rollback().db()?;
            } else {
                tx.commit().db()?;
            }
            Ok(rollout)
        })
        .await
        .inspect(|_| self.rollouts_wake.notify_one())
    }

    /// A rollout as the API shows it.
    pub async fn rollout(&self, id: String) -> Result<Rollout> {
        let polls = self.polls.clone();
        self.read(move |conn| {
            get(conn, &id, &polls, now_seconds() as u64)?
                .ok_or_else(|| AppError::NotFound(format!("rollout '{id}' not found")))
        })
        .await
    }

    /// Every rollout, newest first.
    pub async fn rollouts(&self) -> Result<Vec<Rollout>> {
        self.read(list).await
    }

    /// `start`, `pause`, `resume`, `abort`, `rollback` by a person (`who`).
    pub async fn rollout_verb(&self, id: String, verb: Verb, who: String) -> Result<Rollout> {
        let now = now_seconds();
        let reason = format!("{} by {who}", verb.as_str());
        let key = id.clone();
        // Read and moved in one transaction: a verb never races the controller.
        let current = move |tx: &Connection| -> Result<(Loaded, RolloutState)> {
            let loaded = load(tx, &key, true)?
                .ok_or_else(|| AppError::NotFound(format!("rollout '{key}' not found")))?;
            let to = verb.transition(loaded.state)?;
            Ok((loaded, to))
        };
        if verb == Verb::Rollback {
            self.inventory_write(rollout_write(&id), move |pipeline| {
                let (loaded, _) = current(pipeline.conn())?;
                roll_back(pipeline, &loaded, &who, &reason, now)
            })
            .await?;
        } else {
            self.write(move |tx| {
                let (loaded, to) = current(tx)?;
                apply_verb(tx, &loaded, verb, to, &who, &reason, now)
            })
            .await?;
        }
        self.rollouts_wake.notify_one();
        self.rollout(id).await
    }

    /// One look at every running rollout: gate verdicts, timeouts, the next step, a pause,
    /// a rollback or the promotion, each in its own transaction. Returns the number of
    /// transactions written.
    pub async fn advance_rollouts(&self, now: i64) -> Result<usize> {
        let running: Vec<String> = self
            .read(|conn| {
                conn.prepare_cached("SELECT id FROM rollouts WHERE state = 'running' ORDER BY id")
                    .db()?
                    .query_map([], |row| row.get(0))
                    .db()?
                    .collect::<rusqlite::Result<_>>()
                    .db()
            })
            .await?;
        let mut written = 0;
        for id in running {
            // A few passes: a gate that passes with no bake goes on to the next step at once.
            for _ in 0..4 {
                match self.advance_rollout(&id, now).await {
                    Ok(true) => written += 1,
                    Ok(false) => break,
                    // Another writer moved it first: look again next time.
                    Err(AppError::PreconditionFailed(message)) => {
                        tracing::debug!(rollout = %id, %message, "rollout step deferred");
                        break;
                    }
                    Err(err) => return Err(err),
                }
            }
        }
        Ok(written)
    }

    async fn advance_rollout(&self, id: &str, now: i64) -> Result<bool> {
        let (polls, key, only_cluster_reports) = (
            self.polls.clone(),
            id.to_owned(),
            self.settings.rollout_gate_needs_identity,
        );
        let looked = self
            .read(move |conn| {
                let Some(loaded) = load(conn, &key, true)? else {
                    return Ok(None);
                };
                if loaded.state != RolloutState::Running {
                    return Ok(None);
                }
                let seen = observe(conn, &loaded.spec.component, &polls, now.max(0) as u64)?;
                let decision = decide(&loaded, &seen, &polls, only_cluster_reports, now);
                Ok(Some((loaded, decision)))
            })
            .await?;
        let Some((loaded, mut decision)) = looked else {
            return Ok(false);
        };
        let polls = self.polls.clone();
        let started = std::time::Instant::now();
        let next = std::mem::take(&mut decision.next);
        let action = format!("{next:?}");
        let moved = self.act(id, loaded, decision, next, polls, now).await;
        if moved.as_ref().is_ok_and(|moved| *moved) {
            tracing::debug!(
                rollout = id,
                action,
                took_ms = started.elapsed().as_millis() as u64,
                "rollout moved"
            );
        }
        moved
    }

    /// Writes what `decide` found, each kind of move in its own transaction.
    async fn act(
        &self,
        id: &str,
        loaded: Loaded,
        decision: Decision,
        next: Next,
        polls: PollTracker,
        now: i64,
    ) -> Result<bool> {
        match next {
            Next::Stay if decision.clusters.is_empty() && decision.step.is_none() => Ok(false),
            Next::Stay => {
                self.write(move |tx| {
                    still(tx, &loaded)?;
                    record_decision(tx, &loaded, &decision, now)
                })
                .await?;
                Ok(true)
            }
            Next::StartStep(step) => {
                let held = loaded.clone();
                let written = self
                    .inventory_write(rollout_write(id), move |pipeline| {
                        still(pipeline.conn(), &loaded)?;
                        record_decision(pipeline.conn(), &loaded, &decision, now)?;
                        start_step(pipeline, &loaded, step, &polls, now)
                    })
                    .await;
                self.pause_if_refused(
                    written.map(drop),
                    held,
                    &format!("step {step} cannot start"),
                    now,
                )
                .await
            }
            Next::Promote => {
                let held = loaded.clone();
                let written = self
                    .inventory_write(rollout_write(id), move |pipeline| {
                        still(pipeline.conn(), &loaded)?;
                        record_decision(pipeline.conn(), &loaded, &decision, now)?;
                        promote(pipeline, &loaded, now)
                    })
                    .await;
                self.pause_if_refused(
                    written.map(drop),
                    held,
                    "the promotion cannot be written",
                    now,
                )
                .await
            }
            Next::Fail(reason) => match loaded.spec.on_failure {
                OnFailure::Pause => {
                    self.pause(loaded, Some(decision), &reason, now).await?;
                    Ok(true)
                }
                OnFailure::Rollback => {
                    let held = loaded.clone();
                    let why = reason.clone();
                    let written = self
                        .inventory_write(rollout_write(id), move |pipeline| {
                            still(pipeline.conn(), &loaded)?;
                            record_decision(pipeline.conn(), &loaded, &decision, now)?;
                            // The clusters' states as just decided, for the rollback.
                            let reloaded = load(pipeline.conn(), &loaded.spec.id, true)?
                                .ok_or_else(|| AppError::Internal("rollout vanished".into()))?;
                            roll_back(pipeline, &reloaded, CONTROLLER, &why, now)
                        })
                        .await;
                    self.pause_if_refused(
                        written.map(drop),
                        held,
                        &format!("{reason}; the rollback cannot be written"),
                        now,
                    )
                    .await
                }
            },
        }
    }

    /// Pauses a running rollout (with the verdicts of `decision`, if any), saying why.
    async fn pause(
        &self,
        loaded: Loaded,
        decision: Option<Decision>,
        reason: &str,
        now: i64,
    ) -> Result<()> {
        let reason = format!("paused: {reason}");
        self.write(move |tx| {
            still(tx, &loaded)?;
            if let Some(decision) = &decision {
                record_decision(tx, &loaded, decision, now)?;
            }
            set_state(tx, &loaded.spec.id, RolloutState::Paused, now)?;
            note(
                tx,
                &loaded.spec.id,
                now,
                RolloutState::Paused,
                loaded.current_step,
                CONTROLLER,
                &reason,
            )
        })
        .await
    }

    /// A write of the rollout that the inventory's rules refuse (a feed over Flux's limit, a
    /// catalog rule) cannot succeed by retrying: the rollout pauses and says why.
    async fn pause_if_refused(
        &self,
        written: Result<()>,
        loaded: Loaded,
        what: &str,
        now: i64,
    ) -> Result<bool> {
        match written {
            Ok(()) => Ok(true),
            Err(
                err @ (AppError::Validation(_) | AppError::BlastRadius(_) | AppError::Conflict(_)),
            ) => {
                tracing::warn!(rollout = %loaded.spec.id, error = %err, "rollout paused: {what}");
                self.pause(loaded, None, &format!("{what}: {err}"), now)
                    .await?;
                Ok(true)
            }
            Err(err) => Err(err),
        }
    }

    /// Wakes the rollout controller (a verb, new events).
    pub fn wake_rollouts(&self) {
        self.rollouts_wake.notify_one();
    }

    /// Resolves when something may have moved a rollout.
    pub async fn rollouts_woken(&self) {
        self.rollouts_wake.notified().await;
    }
}

/// A verb other than rollback: the state, and on resume fresh deadlines.
fn apply_verb(
    tx: &Connection,
    loaded: &Loaded,
    verb: Verb,
    to: RolloutState,
    who: &str,
    reason: &str,
    now: i64,
) -> Result<()> {
    let id = &loaded.spec.id;
    set_state(tx, id, to, now)?;
    match verb {
        Verb::Start => {
            tx.prepare_cached(
                "UPDATE rollouts SET started_at = ?2, current_step = 0 WHERE id = ?1",
            )
            .db()?
            .execute(params![id, now])
            .db()?;
        }
        Verb::Resume => {
            // Failed clusters are judged again from what they report now, with a new deadline
            // for the clusters not passed yet.
            tx.prepare_cached(
                "UPDATE rollout_clusters SET state = 'progressing' WHERE rollout_id = ?1 AND state = 'failed'",
            )
            .db()?
            .execute([id])
            .db()?;
            tx.prepare_cached(
                "UPDATE rollout_steps SET deadline_at = ?2 WHERE rollout_id = ?1 AND state <> 'pending'",
            )
            .db()?
            .execute(params![id, now + loaded.spec.wave_timeout_seconds as i64])
            .db()?;
            for step in loaded.steps.iter().filter(|s| s.state == StepState::Failed) {
                set_step(tx, id, step.step, StepState::Waiting, &loaded.spec, now)?;
            }
        }
        Verb::Pause | Verb::Abort | Verb::Rollback => {}
    }
    note(
        tx,
        id,
        now,
        to,
        loaded
            .current_step
            .filter(|_| loaded.state != RolloutState::Planned),
        who,
        reason,
    )
}
