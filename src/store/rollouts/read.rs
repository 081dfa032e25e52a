//! Reading rollouts back: the rows, the API's view of them, metrics gauges, and what the
//! controller sees of the clusters a rollout moves.

use std::collections::HashMap;

use poem_openapi::types::ParseFromJSON;
use rusqlite::{Connection, OptionalExtension, Row};

use super::parse_state;
use crate::domain::encode::Feed;
use crate::domain::report::format_timestamp;
use crate::domain::rollout::{
    ClusterCounts, ClusterRecord, ClusterState, KeptValues, Overrides, Rollout, RolloutCluster,
    RolloutRecord, RolloutSpec, RolloutState, RolloutStep, Seen, StepRecord, StepState, Transition,
};
use crate::error::{AppError, Result};
use crate::store::SqlResultExt;
use crate::store::convergence::Scope;
use crate::store::polls::PollTracker;

// ---------------------------------------------------------------------------------------
// Reading

pub(super) fn load(
    conn: &Connection,
    id: &str,
    with_clusters: bool,
) -> Result<Option<RolloutRecord>> {
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
            Ok(StepRecord {
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
             planned_oci_tag, planned_component_path, previous_oci_tag, previous_component_path, \
             added, window_opens_at FROM rollout_clusters WHERE rollout_id = ?1 ORDER BY step IS NULL, step, cluster_id",
        )
        .db()?
        .query_map([id], cluster_row)
        .db()?
        .collect::<rusqlite::Result<Vec<_>>>()
        .db()?
    } else {
        Vec::new()
    };
    Ok(Some(RolloutRecord {
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

pub(super) fn cluster_row(row: &Row) -> rusqlite::Result<ClusterRecord> {
    let state: String = row.get(3)?;
    Ok(ClusterRecord {
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
        added: row.get(11)?,
        window_opens_at: row.get(12)?,
    })
}

pub(super) fn transitions(conn: &Connection, id: &str) -> Result<Vec<Transition>> {
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
    let Some(record) = load(conn, id, true)? else {
        return Ok(None);
    };
    Ok(Some(view(conn, record, Some((polls, now)))?))
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
        let Some(record) = load(conn, &id, false)? else {
            continue;
        };
        let mut rollout = view(conn, record, None)?;
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

pub(super) fn view(
    conn: &Connection,
    record: RolloutRecord,
    stale_at: Option<(&PollTracker, u64)>,
) -> Result<Rollout> {
    let transitions = transitions(conn, &record.spec.id)?;
    let time = |t: Option<i64>| t.map(format_timestamp);
    let mut steps: Vec<RolloutStep> = record
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
    for c in record.clusters {
        counts.add(c.state);
        let skipped_stale = c.state == ClusterState::Skipped && c.reason.as_deref() == Some(STALE);
        let stale_now = c.state == ClusterState::Pending
            && stale_at.is_some_and(|(polls, now)| polls.is_stale_of(&c.cluster_dns, now));
        if skipped_stale || stale_now {
            stale.push(c.cluster_id.clone());
        }
        let listed = RolloutCluster {
            id: c.cluster_id,
            cluster_dns: c.cluster_dns,
            state: c.state,
            reason: c.reason,
            message: c.message,
            window_opens_at: c
                .window_opens_at
                .filter(|_| c.state == ClusterState::WaitingWindow)
                .map(crate::domain::window::rfc3339),
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
        spec: record.spec,
        state: record.state,
        current_step: record.current_step.filter(|_| record.state.is_active()),
        created_at: format_timestamp(record.created_at),
        started_at: time(record.started_at),
        finished_at: time(record.finished_at),
        counts,
        steps,
        not_in_steps,
        stale,
        kept_previous: record.kept,
        transitions,
    })
}

/// The reason of a cluster skipped as stale.
pub(super) const STALE: &str = "stale";

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

pub(super) fn observe(
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
    crate::store::convergence::for_each_component(conn, &scope, polls, now, |row| {
        if let Some(entry) = seen.get_mut(row.cluster_id) {
            entry.cluster_dns = Some(row.cluster_dns.to_owned());
            entry.state = Some(row.state);
            entry.reason = row.reason.map(str::to_owned);
            entry.message = row.message.map(str::to_owned);
            entry.via = row.via;
            entry.last_poll = polls.get(row.cluster_dns)[Feed::PlatformComponents.index()]
                .as_ref()
                .map(|p| p.at);
        }
    })?;
    Ok(seen)
}
