//! A rollout's transitions: the writes of its steps, rollback and promotion, the verbs,
//! and the primitives the controller applies its decisions with.

use std::collections::HashMap;

use poem_openapi::types::ToJSON;
use rusqlite::{Connection, OptionalExtension, params};

use super::plan::*;
use super::read::*;
use super::{CONTROLLER, actor, parse_state};
use crate::domain::model::{Environment, PlatformComponent};
use crate::domain::overlay::{self, OverlayComponent};
use crate::domain::rollout::{
    ClusterRecord, ClusterState, Decision, KeptValues, Overrides, Rollout, RolloutRecord,
    RolloutSpec, RolloutState, StepState, Verb, decide, moved,
};
use crate::error::{AppError, Result};
use crate::store::assignments::{self, ComponentWrite, Listed};
use crate::store::audit::Change;
use crate::store::polls::PollTracker;
use crate::store::write::Pipeline;
use crate::store::{SqlResultExt, Store, WriteRequest, components, overlays, windows};

// ---------------------------------------------------------------------------------------
// Writing transitions

/// Fails unless the rollout is still where the decision found it.
pub(super) fn still(tx: &Connection, record: &RolloutRecord) -> Result<()> {
    let now: Option<(String, Option<u32>)> = tx
        .prepare_cached("SELECT state, current_step FROM rollouts WHERE id = ?1")
        .db()?
        .query_row([&record.spec.id], |row| Ok((row.get(0)?, row.get(1)?)))
        .optional()
        .db()?;
    let step_state = |step: u32| -> Result<Option<String>> {
        tx.prepare_cached("SELECT state FROM rollout_steps WHERE rollout_id = ?1 AND step = ?2")
            .db()?
            .query_row(params![record.spec.id, step], |row| row.get(0))
            .optional()
            .db()
    };
    let current = record.current_step.unwrap_or(0);
    let expected_step = record.steps.get(current as usize).map(|s| s.state.as_str());
    let same = now.as_ref().is_some_and(|(state, step)| {
        parse_state(state) == record.state && *step == record.current_step
    }) && step_state(current)?.as_deref() == expected_step;
    if same {
        Ok(())
    } else {
        Err(AppError::PreconditionFailed(format!(
            "rollout '{}' moved on meanwhile",
            record.spec.id
        )))
    }
}

pub(super) fn set_cluster(
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

pub(super) fn set_state(tx: &Connection, id: &str, state: RolloutState, now: i64) -> Result<()> {
    let finished = (!state.is_active()).then_some(now);
    tx.prepare_cached(
        "UPDATE rollouts SET state = ?2, finished_at = coalesce(?3, finished_at) WHERE id = ?1",
    )
    .db()?
    .execute(params![id, state.as_str(), finished])
    .db()?;
    Ok(())
}

pub(super) fn set_step(
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
pub(super) fn record_decision(
    tx: &Connection,
    record: &RolloutRecord,
    decision: &Decision,
    now: i64,
) -> Result<()> {
    let id = &record.spec.id;
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
    let current = record.current_step.unwrap_or(0);
    if let Some(state) = decision.step {
        set_step(tx, id, current, state, &record.spec, now)?;
    }
    for (step, reason) in &decision.notes {
        note(tx, id, now, record.state, *step, CONTROLLER, reason)?;
    }
    Ok(())
}

/// The component on one cluster: whether enabled, the cluster's own values, and whether it
/// lists the component itself (or has it only from an overlay).
#[derive(Debug)]
pub(super) struct Assignment {
    pub enabled: bool,
    pub own: Overrides,
    pub listed: bool,
}

/// The component's assignment on one cluster, overlays included; `None`: not assigned.
pub(super) fn assignment(
    tx: &Connection,
    cluster: &str,
    component: &str,
) -> Result<Option<Assignment>> {
    let listed = tx
        .prepare_cached(
            "SELECT enabled, oci_tag, component_path FROM cluster_components WHERE cluster_id = ?1 AND component_id = ?2",
        )
        .db()?
        .query_row([cluster, component], |row| {
            Ok(Assignment {
                enabled: row.get(0)?,
                own: Overrides {
                    oci_tag: row.get(1)?,
                    component_path: row.get(2)?,
                },
                listed: true,
            })
        })
        .optional()
        .db()?;
    if listed.is_some() {
        return Ok(listed);
    }
    let environment: Option<String> = tx
        .prepare_cached("SELECT environment FROM clusters WHERE id = ?1")
        .db()?
        .query_row([cluster], |row| row.get(0))
        .optional()
        .db()?;
    let Some(environment) = environment.as_deref().and_then(Environment::parse) else {
        return Ok(None);
    };
    let labels = crate::store::clusters::labels_of(tx, cluster)?;
    let all = overlays::all(tx)?;
    let matched = overlay::matching(&all, environment, &labels);
    Ok(
        overlay::component_values(component, None, &matched).map(|values| Assignment {
            enabled: values.enabled.0,
            own: Overrides::default(),
            listed: false,
        }),
    )
}

/// Sets a cluster's own values for the component (an entry is added at the end of its list
/// when it has the component only from an overlay), or with `None` removes the entry the
/// rollout added; only the entry's row is touched, and `write` keeps it for the transition's
/// one audit entry.
pub(super) fn write_overrides(
    write: &mut ComponentWrite,
    conn: &Connection,
    cluster: &str,
    values: Option<&Overrides>,
) -> Result<()> {
    write.set(conn, cluster, |current| {
        Ok(match (values, current) {
            (Some(values), Some(current)) => Some(Listed {
                oci_tag: values.oci_tag.clone(),
                component_path: values.component_path.clone(),
                ..current.clone()
            }),
            (Some(values), None) => Some(Listed {
                position: assignments::next_position(conn, cluster)?,
                enabled: true,
                oci_tag: values.oci_tag.clone(),
                component_path: values.component_path.clone(),
                patch: None,
            }),
            (None, _) => None,
        })
    })?;
    Ok(())
}

/// When a closed cluster whose window does not open within the look-ahead is looked at again.
const WINDOW_RECHECK_SECONDS: i64 = 86_400;

/// Gives the clusters of `step` the target (one inventory write), skipping those that are
/// stale, gone, disabled or edited by hand since the plan; those a maintenance window closes
/// wait (`waiting_window`) until it opens, when the step starts again for them (its deadline
/// then counts from that moment).
pub(super) fn start_step(
    pipeline: &mut Pipeline<'_>,
    record: &RolloutRecord,
    step: u32,
    polls: &PollTracker,
    now: i64,
) -> Result<()> {
    let spec = &record.spec;
    let id = &spec.id;
    let (mut moved_count, mut skipped, mut waiting) = (0, 0, 0);
    let due: Vec<&ClusterRecord> = record
        .clusters
        .iter()
        .filter(|c| {
            c.step == Some(step)
                && matches!(c.state, ClusterState::Pending | ClusterState::WaitingWindow)
        })
        .collect();
    let ids: Vec<&str> = due.iter().map(|c| c.cluster_id.as_str()).collect();
    let closed = windows::opens_at(pipeline.conn(), &ids, now)?;
    let mut write = ComponentWrite::new(&spec.component);
    let resumed = record
        .steps
        .get(step as usize)
        .is_some_and(|s| s.state != StepState::Pending);
    for c in due {
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
            (_, Some(a)) if !a.enabled => Some((
                ClusterState::Skipped,
                "disabled: the component is disabled on the cluster".to_owned(),
            )),
            (_, Some(a)) if a.own != c.planned => Some((
                ClusterState::Pinned,
                "edited by hand since the rollout was planned; it keeps the edit".to_owned(),
            )),
            (Some(dns), _) if polls.is_stale_of(dns, now.max(0) as u64) => {
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
        if let Some(opens) = closed.get(&c.cluster_id) {
            let opens_at = opens.unwrap_or(now + WINDOW_RECHECK_SECONDS);
            let reason = match opens {
                Some(opens) => format!(
                    "a maintenance window closes it; it moves when it opens at {}",
                    crate::domain::window::rfc3339(*opens)
                ),
                None => "a maintenance window closes it and does not open within a year".into(),
            };
            pipeline
                .conn()
                .prepare_cached(
                    "UPDATE rollout_clusters SET state = 'waiting_window', reason = ?3,                      message = NULL, window_opens_at = ?4 WHERE rollout_id = ?1 AND cluster_id = ?2",
                )
                .db()?
                .execute(params![id, c.cluster_id, reason, opens_at])
                .db()?;
            waiting += 1;
            continue;
        }
        let (previous, listed) = found.map_or((Overrides::default(), true), |a| (a.own, a.listed));
        write_overrides(
            &mut write,
            pipeline.conn(),
            &c.cluster_id,
            Some(&moved(&spec.target, &previous)),
        )?;
        pipeline
            .conn()
            .prepare_cached(
                "UPDATE rollout_clusters SET state = 'progressing', changed = 1, reason = NULL, message = NULL, \
                 previous_oci_tag = ?3, previous_component_path = ?4, added = ?5, window_opens_at = NULL \
                 WHERE rollout_id = ?1 AND cluster_id = ?2",
            )
            .db()?
            .execute(params![id, c.cluster_id, previous.oci_tag, previous.component_path, !listed])
            .db()?;
        moved_count += 1;
    }
    pipeline.recorded_assignments(write)?;
    let tx = pipeline.conn();
    if resumed && moved_count == 0 {
        // Windows rescheduled, none opened: the step's deadline stays, nothing to note.
        return Ok(());
    }
    set_step(tx, id, step, StepState::Waiting, spec, now)?;
    if resumed {
        // The gate judges polls and reports from the moment the released clusters moved.
        tx.prepare_cached(
            "UPDATE rollout_steps SET started_at = ?3 WHERE rollout_id = ?1 AND step = ?2",
        )
        .db()?
        .execute(params![id, step, now])
        .db()?;
    }
    tx.prepare_cached("UPDATE rollouts SET current_step = ?2 WHERE id = ?1")
        .db()?
        .execute(params![id, step])
        .db()?;
    let wave = record.steps.get(step as usize).map_or(0, |s| s.wave);
    let what = if resumed {
        format!(
            "step {step}: {moved_count} cluster(s) whose maintenance window opened given oci_tag '{}'; \
             the step's deadline counts from now",
            spec.target.oci_tag
        )
    } else {
        format!(
            "step {step} (wave {wave}) started: {moved_count} cluster(s) given oci_tag '{}', {skipped} skipped",
            spec.target.oci_tag
        )
    };
    let what = if waiting > 0 {
        format!("{what}; {waiting} wait for a maintenance window")
    } else {
        what
    };
    note(
        tx,
        id,
        now,
        RolloutState::Running,
        Some(step),
        CONTROLLER,
        &what,
    )
}

/// Gives every cluster the rollout moved (and that nobody edited since) its previous values
/// back, in the caller's inventory write.
pub(super) fn roll_back(
    pipeline: &mut Pipeline<'_>,
    record: &RolloutRecord,
    who: &str,
    reason: &str,
    now: i64,
) -> Result<()> {
    let spec = &record.spec;
    let mut restored = 0;
    let mut write = ComponentWrite::new(&spec.component);
    for c in record.clusters.iter().filter(|c| {
        c.changed
            && !matches!(
                c.state,
                ClusterState::Pinned | ClusterState::RolledBack | ClusterState::Skipped
            )
    }) {
        match assignment(pipeline.conn(), &c.cluster_id, &spec.component)? {
            Some(a) if a.listed && a.own == moved(&spec.target, &c.previous) => {
                let restored_values = (!c.added).then_some(&c.previous);
                write_overrides(&mut write, pipeline.conn(), &c.cluster_id, restored_values)?;
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
    pipeline.recorded_assignments(write)?;
    let tx = pipeline.conn();
    set_state(tx, &spec.id, RolloutState::RolledBack, now)?;
    note(
        tx,
        &spec.id,
        now,
        RolloutState::RolledBack,
        record.current_step,
        who,
        &format!("rolled back: {restored} cluster(s) got their previous values back; {reason}"),
    )
}

/// The last step passed: the promoted layer (the catalog, or the rollout's overlay) takes the
/// target and the rollout's overrides go (entries it added included), in one inventory write
/// that leaves every feed as it is. Clusters the rollout did not move keep their previous
/// values as overrides, where the promoted layer gave them those values.
pub(super) fn promote(pipeline: &mut Pipeline<'_>, record: &RolloutRecord, now: i64) -> Result<()> {
    let spec = &record.spec;
    let target = &spec.target;
    let catalog = components::get(pipeline.conn(), &spec.component)?.ok_or_else(|| {
        AppError::Conflict(format!("platform component '{}' is gone", spec.component))
    })?;
    // Read before the promoted layer changes: where each cluster's values come from.
    let clusters = assigned(pipeline.conn(), &spec.component, spec.overlay.as_deref())?;
    let layer = match &spec.overlay {
        None => {
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
            pipeline.record::<PlatformComponent, _>(&spec.component, |tx| {
                components::update(tx, &updated)
            })?;
            format!("the catalog entry '{}'", spec.component)
        }
        Some(id) => {
            let mut updated = overlays::get(pipeline.conn(), id)?
                .ok_or_else(|| AppError::Conflict(format!("overlay '{id}' is gone")))?;
            let entries = &mut updated.platform_components;
            let index = match entries.iter().position(|e| e.id == spec.component) {
                Some(index) => index,
                None => {
                    entries.push(OverlayComponent {
                        id: spec.component.clone(),
                        enabled: None,
                        oci_tag: None,
                        component_path: None,
                    });
                    entries.len() - 1
                }
            };
            entries[index].oci_tag = Some(target.oci_tag.clone());
            if let Some(path) = &target.component_path {
                entries[index].component_path = Some(path.clone());
            }
            pipeline.record::<crate::domain::overlay::Overlay, _>(id, |tx| {
                overlays::update(tx, &updated)
            })?;
            format!("overlay '{id}'")
        }
    };
    let rows: HashMap<&str, &ClusterRecord> = record
        .clusters
        .iter()
        .map(|c| (c.cluster_id.as_str(), c))
        .collect();
    let (mut removed, mut kept) = (0, Vec::new());
    let mut write = ComponentWrite::new(&spec.component);
    for cluster in clusters {
        let id = cluster.candidate.id.as_str();
        let listed = cluster.own.is_some();
        let current = cluster
            .own
            .as_ref()
            .map_or_else(Overrides::default, |o| Overrides {
                oci_tag: o.oci_tag.clone(),
                component_path: o.component_path.clone(),
            });
        let ours = rows.get(id).filter(|c| {
            c.changed
                && matches!(
                    c.state,
                    ClusterState::Passed | ClusterState::Failed | ClusterState::Progressing
                )
                && listed
                && current == moved(target, &c.previous)
        });
        let wanted = if let Some(ours) = ours {
            removed += 1;
            (!ours.added).then(|| Overrides {
                oci_tag: None,
                component_path: if target.component_path.is_some() {
                    None
                } else {
                    current.component_path.clone()
                },
            })
        } else {
            // The promotion changes what it served only where the promoted layer set it.
            let tag_follows = !cluster.tag_above;
            let path_follows = target.component_path.is_some() && !cluster.path_above;
            // An entry of its own would enable a component an overlay disables.
            if !(tag_follows || path_follows) || (!listed && !cluster.values.enabled.0) {
                continue;
            }
            let tag_before = cluster
                .values
                .oci_tag
                .0
                .clone()
                .unwrap_or_else(|| catalog.oci_tag.clone());
            let path_before = cluster
                .values
                .component_path
                .0
                .clone()
                .unwrap_or_else(|| catalog.component_path.clone());
            let values = Overrides {
                oci_tag: if tag_follows {
                    Some(tag_before)
                } else {
                    current.oci_tag.clone()
                },
                component_path: if path_follows {
                    Some(path_before)
                } else {
                    current.component_path.clone()
                },
            };
            if values == current && listed {
                continue;
            }
            kept.push(KeptValues {
                cluster: id.to_owned(),
                oci_tag: values.oci_tag.clone().unwrap_or_default(),
                component_path: values
                    .component_path
                    .clone()
                    .filter(|_| target.component_path.is_some()),
            });
            Some(values)
        };
        if !listed || wanted.as_ref() != Some(&current) {
            write_overrides(&mut write, pipeline.conn(), id, wanted.as_ref())?;
        }
    }
    pipeline.recorded_assignments(write)?;
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
            "promoted: {layer} now has oci_tag '{}'; {removed} per-cluster override(s) \
             removed, {} cluster(s) keep their previous values as overrides",
            target.oci_tag,
            kept.len()
        ),
    )
}

// ---------------------------------------------------------------------------------------
// The store's rollout operations

/// The inventory write of a rollout's step, rollback or promotion.
/// A rollout's own inventory write: not held by maintenance windows, since its steps never
/// move a closed cluster (they wait as `waiting_window`).
pub(super) fn rollout_write(id: &str) -> WriteRequest {
    WriteRequest {
        held_by_windows: false,
        ..WriteRequest::new(Change {
            actor: actor(id),
            method: "PUT",
        })
    }
}

impl Store {
    /// `POST /rollouts`: plans and stores a rollout (`dry_run`: plans, stores nothing).
    pub async fn create_rollout(
        &self,
        spec: RolloutSpec,
        who: String,
        dry_run: bool,
    ) -> Result<Rollout> {
        let (polls, now) = (self.polls.clone(), self.clock().now());
        self.on_writer(move |_, conn| {
            let tx = conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .db()?;
            let id = spec.id.clone();
            let planned = plan(&tx, spec)?;
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
        let (polls, now) = (self.polls.clone(), self.clock().now_u64());
        self.read(move |conn| {
            get(conn, &id, &polls, now)?
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
        let now = self.clock().now();
        let reason = format!("{} by {who}", verb.as_str());
        let key = id.clone();
        // Read and moved in one transaction: a verb never races the controller.
        let current = move |tx: &Connection| -> Result<(RolloutRecord, RolloutState)> {
            let record = load(tx, &key, true)?
                .ok_or_else(|| AppError::NotFound(format!("rollout '{key}' not found")))?;
            let to = verb.transition(record.state)?;
            Ok((record, to))
        };
        if verb == Verb::Rollback {
            self.inventory_write(rollout_write(&id), move |pipeline| {
                let (record, _) = current(pipeline.conn())?;
                roll_back(pipeline, &record, &who, &reason, now)
            })
            .await?;
        } else {
            self.write(move |tx| {
                let (record, to) = current(tx)?;
                apply_verb(tx, &record, verb, to, &who, &reason, now)
            })
            .await?;
        }
        self.rollouts_wake.notify_one();
        self.rollout(id).await
    }

    /// Ids of the running rollouts.
    pub async fn running_rollouts(&self) -> Result<Vec<String>> {
        self.read(|conn| {
            conn.prepare_cached("SELECT id FROM rollouts WHERE state = 'running' ORDER BY id")
                .db()?
                .query_map([], |row| row.get(0))
                .db()?
                .collect::<rusqlite::Result<_>>()
                .db()
        })
        .await
    }

    /// One look at a running rollout at `now`: its rows and what the controller decides
    /// (`None`: it is not running any more).
    pub async fn look_at_rollout(
        &self,
        id: &str,
        now: i64,
    ) -> Result<Option<(RolloutRecord, Decision)>> {
        let (polls, key, only_cluster_reports) = (
            self.polls.clone(),
            id.to_owned(),
            self.settings.rollout_gate_needs_identity,
        );
        self.read(move |conn| {
            let Some(record) = load(conn, &key, true)? else {
                return Ok(None);
            };
            if record.state != RolloutState::Running {
                return Ok(None);
            }
            let seen = observe(conn, &record.spec.component, &polls, now.max(0) as u64)?;
            let decision = decide(&record, &seen, only_cluster_reports, now);
            Ok(Some((record, decision)))
        })
        .await
    }

    /// Records a decision's verdicts and notes, the rollout staying where it is.
    pub async fn record_rollout_decision(
        &self,
        record: RolloutRecord,
        decision: Decision,
        now: i64,
    ) -> Result<()> {
        self.write(move |tx| {
            still(tx, &record)?;
            record_decision(tx, &record, &decision, now)
        })
        .await
    }

    /// Records a decision and starts step `step`: its clusters get the target.
    pub async fn start_rollout_step(
        &self,
        record: RolloutRecord,
        decision: Decision,
        step: u32,
        now: i64,
    ) -> Result<()> {
        let polls = self.polls.clone();
        self.inventory_write(rollout_write(&record.spec.id), move |pipeline| {
            still(pipeline.conn(), &record)?;
            record_decision(pipeline.conn(), &record, &decision, now)?;
            start_step(pipeline, &record, step, &polls, now)
        })
        .await
        .map(drop)
    }

    /// Records a decision and promotes the rollout: the catalog takes the target.
    pub async fn promote_rollout(
        &self,
        record: RolloutRecord,
        decision: Decision,
        now: i64,
    ) -> Result<()> {
        self.inventory_write(rollout_write(&record.spec.id), move |pipeline| {
            still(pipeline.conn(), &record)?;
            record_decision(pipeline.conn(), &record, &decision, now)?;
            promote(pipeline, &record, now)
        })
        .await
        .map(drop)
    }

    /// Records a decision that failed the rollout and rolls it back, saying why.
    pub async fn roll_back_failed_rollout(
        &self,
        record: RolloutRecord,
        decision: Decision,
        reason: String,
        now: i64,
    ) -> Result<()> {
        self.inventory_write(rollout_write(&record.spec.id), move |pipeline| {
            still(pipeline.conn(), &record)?;
            record_decision(pipeline.conn(), &record, &decision, now)?;
            // The clusters' states as just decided, for the rollback.
            let reloaded = load(pipeline.conn(), &record.spec.id, true)?
                .ok_or_else(|| AppError::Internal("rollout vanished".into()))?;
            roll_back(pipeline, &reloaded, CONTROLLER, &reason, now)
        })
        .await
        .map(drop)
    }

    /// Pauses a running rollout (with the verdicts of `decision`, if any), saying why.
    pub async fn pause_rollout(
        &self,
        record: RolloutRecord,
        decision: Option<Decision>,
        reason: &str,
        now: i64,
    ) -> Result<()> {
        let reason = format!("paused: {reason}");
        self.write(move |tx| {
            still(tx, &record)?;
            if let Some(decision) = &decision {
                record_decision(tx, &record, decision, now)?;
            }
            set_state(tx, &record.spec.id, RolloutState::Paused, now)?;
            note(
                tx,
                &record.spec.id,
                now,
                RolloutState::Paused,
                record.current_step,
                CONTROLLER,
                &reason,
            )
        })
        .await
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
pub(super) fn apply_verb(
    tx: &Connection,
    record: &RolloutRecord,
    verb: Verb,
    to: RolloutState,
    who: &str,
    reason: &str,
    now: i64,
) -> Result<()> {
    let id = &record.spec.id;
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
            .execute(params![id, now + record.spec.wave_timeout_seconds as i64])
            .db()?;
            for step in record.steps.iter().filter(|s| s.state == StepState::Failed) {
                set_step(tx, id, step.step, StepState::Waiting, &record.spec, now)?;
            }
        }
        Verb::Pause | Verb::Abort | Verb::Rollback => {}
    }
    note(
        tx,
        id,
        now,
        to,
        record
            .current_step
            .filter(|_| record.state != RolloutState::Planned),
        who,
        reason,
    )
}
