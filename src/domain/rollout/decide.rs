//! How the controller judges a running rollout: one look at its rows and at what its
//! clusters report and poll gives one `Decision` (cluster verdicts, the step's state, and what
//! comes next). Pure: the store reads the rows and the observations, and writes the decision.

use std::collections::HashMap;

use super::{
    ClusterState, Gate, KeptValues, Observation, RolloutSpec, RolloutState, StepState, Verdict,
};
use crate::domain::report::{State, Via};

/// A rollout's rows.
#[derive(Clone, Debug)]
pub struct RolloutRecord {
    pub spec: RolloutSpec,
    pub state: RolloutState,
    pub current_step: Option<u32>,
    pub created_at: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    pub kept: Vec<KeptValues>,
    pub steps: Vec<StepRecord>,
    pub clusters: Vec<ClusterRecord>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct StepRecord {
    pub step: u32,
    pub wave: u32,
    pub state: StepState,
    pub started_at: Option<i64>,
    pub deadline_at: Option<i64>,
    pub passed_at: Option<i64>,
    pub bake_until: Option<i64>,
}

#[derive(Clone, Debug)]
pub struct ClusterRecord {
    pub cluster_id: String,
    pub cluster_dns: String,
    pub step: Option<u32>,
    pub state: ClusterState,
    pub reason: Option<String>,
    pub message: Option<String>,
    pub changed: bool,
    pub planned: Overrides,
    pub previous: Overrides,
    /// The cluster had the component only from an overlay: the rollout gave it an entry of
    /// its own, which a rollback or the promotion removes again.
    pub added: bool,
    /// `waiting_window`: when its window opens (Unix seconds); `None`: look again now.
    pub window_opens_at: Option<i64>,
}

/// A cluster's own values for the component (`None`: the catalog's).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Overrides {
    pub oci_tag: Option<String>,
    pub component_path: Option<String>,
}

/// A cluster's assignment of the component now, and what it reported.
#[derive(Clone, Debug, Default)]
pub struct Seen {
    /// `None`: the cluster or its assignment of the component is gone.
    pub assignment: Option<(bool, Overrides)>,
    pub cluster_dns: Option<String>,
    pub state: Option<State>,
    pub reason: Option<String>,
    pub message: Option<String>,
    pub via: Option<Via>,
    /// When the cluster last polled its platform-components feed (Unix seconds).
    pub last_poll: Option<u64>,
}

/// The overrides a cluster has while the rollout holds it: the target where it sets one.
pub fn moved(target: &super::RolloutTarget, previous: &Overrides) -> Overrides {
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

/// When a running rollout next needs a look that nothing but the clock can prompt (new
/// events and verbs wake the controller on their own): at once for a step to start, every
/// `tick` while clusters are judged (deadlines, polls), at the bake's end, or when the first
/// window of its waiting clusters opens. `None`: only a wake-up can move it.
pub fn next_look(record: &RolloutRecord, now: i64, tick: i64) -> Option<i64> {
    let current = record.current_step.unwrap_or(0);
    let Some(step) = record.steps.get(current as usize) else {
        return Some(now);
    };
    match step.state {
        super::StepState::Pending => Some(now),
        super::StepState::Baking => step.bake_until.or(Some(now)),
        super::StepState::Waiting => {
            let in_step = || record.clusters.iter().filter(|c| c.step == Some(current));
            if in_step().any(|c| c.state == ClusterState::Progressing) {
                return Some(now + tick);
            }
            in_step()
                .filter(|c| c.state == ClusterState::WaitingWindow)
                .map(|c| c.window_opens_at.unwrap_or(now))
                .min()
                .or(Some(now + tick))
        }
        _ => Some(now + tick),
    }
}

/// What one look at a running rollout decided.
#[derive(Debug, Default)]
pub struct Decision {
    /// Clusters whose state changes: id → (state, reason, message).
    pub clusters: Vec<(String, ClusterState, Option<String>, Option<String>)>,
    /// The current step moves to this state.
    pub step: Option<StepState>,
    pub next: Next,
    pub notes: Vec<(Option<u32>, String)>,
}

#[derive(Debug, Default, PartialEq)]
pub enum Next {
    #[default]
    Stay,
    StartStep(u32),
    Promote,
    /// Too many failures in a step: pause or roll back, with the reason.
    Fail(String),
}

pub fn decide(
    record: &RolloutRecord,
    seen: &HashMap<String, Seen>,
    only_cluster_reports: bool,
    now: i64,
) -> Decision {
    let mut decision = Decision::default();
    let current = record.current_step.unwrap_or(0);
    let Some(step) = record.steps.get(current as usize) else {
        decision.next = Next::Promote;
        return decision;
    };
    if step.state == StepState::Pending {
        decision.next = Next::StartStep(current);
        return decision;
    }
    let spec = &record.spec;
    let started = |s: u32| record.steps.get(s as usize);
    let mut failures: HashMap<u32, Vec<String>> = HashMap::new();
    let mut progressing = 0;
    // Clusters of the current step a window holds, and those whose window has opened.
    let (mut waiting, mut opened) = (0, 0);
    for c in &record.clusters {
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
                    let observation = Observation {
                        state: entry.state.unwrap_or(State::Unknown),
                        reason: entry.reason.as_deref(),
                        message: entry.message.as_deref(),
                        by_cluster: entry.via == Some(Via::Cluster),
                        last_poll: entry.last_poll,
                    };
                    let started_at = s.started_at.unwrap_or(now).max(0) as u64;
                    let deadline = s.deadline_at.unwrap_or(now).max(0) as u64;
                    match c.state {
                        ClusterState::Progressing => match super::judge(
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
            ClusterState::WaitingWindow if number == current => {
                waiting += 1;
                if c.window_opens_at.is_none_or(|opens| now >= opens) {
                    opened += 1;
                }
            }
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
                        record
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
    // Clusters whose window opened get the target now (their step starts for them).
    if opened > 0 && step.state == StepState::Waiting {
        decision.next = Next::StartStep(current);
        return decision;
    }
    match step.state {
        StepState::Waiting if progressing == 0 && waiting == 0 => {
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
            decision.next = if (next as usize) < record.steps.len() {
                Next::StartStep(next)
            } else {
                Next::Promote
            };
        }
        _ => {}
    }
    decision
}
