//! Progressive rollouts (README, "Progressive rollouts"): what a rollout asks for, how its
//! plan is made, the rules of its state machine, how a gate judges one cluster (`judge`) and
//! how one look at a running rollout decides what comes next (`decide`). No I/O here:
//! `store::rollouts` keeps the state in SQLite, `controller` moves running rollouts.

mod decide;

use std::collections::BTreeMap;

pub use decide::{
    ClusterRecord, Decision, Next, Overrides, RolloutRecord, Seen, StepRecord, decide, moved,
    next_look,
};

use poem_openapi::{Enum, Object};

use super::model::Environment;
use crate::error::AppError;

/// The values a rollout moves a component to.
#[derive(Object, Clone, Debug, PartialEq)]
#[oai(deny_unknown_fields)]
pub struct RolloutTarget {
    /// The chart or artifact tag; the version the `reported` gate compares with.
    #[oai(validator(min_length = 1))]
    pub oci_tag: String,
    /// A new chart path (a cluster can override it too).
    #[oai(skip_serializing_if_is_none)]
    pub component_path: Option<String>,
    /// A new upstream version; it has no per-cluster override, so it changes in the catalog
    /// at promotion only.
    #[oai(skip_serializing_if_is_none)]
    pub component_version: Option<String>,
}

/// A wave: the clusters it selects (every criterion given must match), and how many of
/// them change at a time.
#[derive(Object, Clone, Debug, Default, PartialEq)]
#[oai(deny_unknown_fields)]
pub struct Wave {
    #[oai(skip_serializing_if_is_none)]
    pub environment: Option<Environment>,
    /// Every label must be on the cluster with this value.
    #[oai(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Cluster ids.
    #[oai(default, skip_serializing_if = "Vec::is_empty")]
    pub clusters: Vec<String>,
    /// Split the wave into steps of at most this many clusters.
    #[oai(skip_serializing_if_is_none, validator(minimum(value = "1")))]
    pub batch: Option<u32>,
}

/// What a step waits for before it has passed.
#[derive(Enum, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[oai(rename_all = "lowercase")]
pub enum Gate {
    /// Every cluster of the step reports the component converged on the target (README, "Flux reports back").
    #[default]
    Reported,
    /// Every cluster of the step has polled its platform-components feed since the step
    /// started (for fleets that do not send events).
    Polled,
}

/// What happens when a step has more than `max_failures` failures.
#[derive(Enum, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[oai(rename_all = "snake_case")]
pub enum OnFailure {
    /// Stop where it stands until someone resumes, aborts or rolls back.
    #[default]
    Pause,
    /// Give every cluster it changed its previous values back.
    Rollback,
}

pub const DEFAULT_BAKE_SECONDS: u64 = 600;
pub const DEFAULT_WAVE_TIMEOUT_SECONDS: u64 = 1800;
/// A rollout has at most this many waves (and a wave names at most this many clusters).
pub const MAX_WAVES: usize = 100;
pub const MAX_WAVE_CLUSTERS: usize = 10_000;

fn default_bake_seconds() -> u64 {
    DEFAULT_BAKE_SECONDS
}

fn default_wave_timeout_seconds() -> u64 {
    DEFAULT_WAVE_TIMEOUT_SECONDS
}

/// `POST /rollouts`: move one catalog component to `target`, wave by wave.
#[derive(Object, Clone, Debug, PartialEq)]
#[oai(deny_unknown_fields)]
pub struct RolloutSpec {
    /// Rollout id (RFC 1123 label); its writes are audited as `rollout:<id>`.
    #[oai(validator(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length = 63))]
    pub id: String,
    /// The catalog component moved.
    pub component: String,
    pub target: RolloutTarget,
    /// Selectors in order: a cluster belongs to the first wave that selects it.
    #[oai(validator(min_items = 1, max_items = 100))]
    pub waves: Vec<Wave>,
    #[oai(default)]
    pub gate: Gate,
    /// After a step passes, wait this long with no new failure before the next one.
    #[oai(
        default = "default_bake_seconds",
        validator(maximum(value = "31536000"))
    )]
    pub bake_seconds: u64,
    /// A cluster not passed this long after its step started counts as a failure.
    #[oai(
        default = "default_wave_timeout_seconds",
        validator(minimum(value = "1"), maximum(value = "31536000"))
    )]
    pub wave_timeout_seconds: u64,
    /// Failures a step tolerates.
    #[oai(default)]
    pub max_failures: u32,
    #[oai(default)]
    pub on_failure: OnFailure,
    /// Also move clusters that pin their own `oci_tag` for the component.
    #[oai(default)]
    pub include_pinned: bool,
    /// Roll out within an overlay: only the clusters it matches move, and promotion writes
    /// the target into the overlay's entry for the component instead of the catalog.
    #[oai(skip_serializing_if_is_none)]
    pub overlay: Option<String>,
}

/// Where a rollout stands.
#[derive(Enum, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[oai(rename_all = "snake_case")]
pub enum RolloutState {
    Planned,
    Running,
    Paused,
    Succeeded,
    Aborted,
    RolledBack,
}

impl RolloutState {
    pub const ALL: [RolloutState; 6] = [
        RolloutState::Planned,
        RolloutState::Running,
        RolloutState::Paused,
        RolloutState::Succeeded,
        RolloutState::Aborted,
        RolloutState::RolledBack,
    ];

    /// Active rollouts hold their component: one per component, no catalog write to it.
    pub const ACTIVE_SQL: &'static str = "('planned', 'running', 'paused')";

    pub fn as_str(self) -> &'static str {
        match self {
            RolloutState::Planned => "planned",
            RolloutState::Running => "running",
            RolloutState::Paused => "paused",
            RolloutState::Succeeded => "succeeded",
            RolloutState::Aborted => "aborted",
            RolloutState::RolledBack => "rolled_back",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }

    pub fn is_active(self) -> bool {
        matches!(
            self,
            RolloutState::Planned | RolloutState::Running | RolloutState::Paused
        )
    }
}

/// What a person (or the CLI) asks of a rollout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verb {
    Start,
    Pause,
    Resume,
    Abort,
    Rollback,
}

impl Verb {
    pub fn as_str(self) -> &'static str {
        match self {
            Verb::Start => "start",
            Verb::Pause => "pause",
            Verb::Resume => "resume",
            Verb::Abort => "abort",
            Verb::Rollback => "rollback",
        }
    }

    /// The state the verb leads to from `from`, or why it cannot be used there.
    pub fn transition(self, from: RolloutState) -> Result<RolloutState, AppError> {
        use RolloutState::*;
        let to = match (self, from) {
            (Verb::Start, Planned) => Running,
            (Verb::Pause, Running) => Paused,
            (Verb::Resume, Paused) => Running,
            (Verb::Abort, Planned | Running | Paused) => Aborted,
            // An aborted rollout leaves its clusters on the target: rolling it back later
            // gives them their previous values.
            (Verb::Rollback, Running | Paused | Aborted) => RolledBack,
            _ => {
                let allowed = match self {
                    Verb::Start => "planned",
                    Verb::Pause => "running",
                    Verb::Resume => "paused",
                    Verb::Abort => "planned, running or paused",
                    Verb::Rollback => "running, paused or aborted",
                };
                return Err(AppError::Conflict(format!(
                    "cannot {} a rollout that is {}: only a {allowed} rollout can",
                    self.as_str(),
                    from.as_str()
                )));
            }
        };
        Ok(to)
    }
}

/// A step of a running rollout.
#[derive(Enum, Clone, Copy, Debug, PartialEq, Eq)]
#[oai(rename = "RolloutStepState", rename_all = "lowercase")]
pub enum StepState {
    /// Not started.
    Pending,
    /// Its clusters have the target; waiting for the gate.
    Waiting,
    /// The gate passed; waiting `bake_seconds` with no new failure.
    Baking,
    Passed,
    /// More failures than `max_failures`.
    Failed,
}

impl StepState {
    pub const ALL: [StepState; 5] = [
        StepState::Pending,
        StepState::Waiting,
        StepState::Baking,
        StepState::Passed,
        StepState::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            StepState::Pending => "pending",
            StepState::Waiting => "waiting",
            StepState::Baking => "baking",
            StepState::Passed => "passed",
            StepState::Failed => "failed",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

/// One cluster in a rollout.
#[derive(Enum, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[oai(rename = "RolloutClusterState", rename_all = "snake_case")]
pub enum ClusterState {
    /// In a step that has not started.
    Pending,
    /// Has the target; the gate has not passed yet.
    Progressing,
    Passed,
    /// Reported a failure, or did not pass within `wave_timeout_seconds`.
    Failed,
    /// Not changed when its step started (stale, disabled, gone); `reason` says which.
    Skipped,
    /// Pins its own values (from the start, or edited by hand during the rollout): never
    /// changed or undone by the rollout.
    Pinned,
    /// No wave selects it: never changed.
    Unselected,
    /// Got its previous values back.
    RolledBack,
    /// Its step has started, but a maintenance window closes it: it gets the target when
    /// the window opens. Neither a failure nor counted against `wave_timeout_seconds`.
    WaitingWindow,
}

impl ClusterState {
    pub const ALL: [ClusterState; 9] = [
        ClusterState::Pending,
        ClusterState::Progressing,
        ClusterState::Passed,
        ClusterState::Failed,
        ClusterState::Skipped,
        ClusterState::Pinned,
        ClusterState::Unselected,
        ClusterState::RolledBack,
        ClusterState::WaitingWindow,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ClusterState::Pending => "pending",
            ClusterState::Progressing => "progressing",
            ClusterState::Passed => "passed",
            ClusterState::Failed => "failed",
            ClusterState::Skipped => "skipped",
            ClusterState::Pinned => "pinned",
            ClusterState::Unselected => "unselected",
            ClusterState::RolledBack => "rolled_back",
            ClusterState::WaitingWindow => "waiting_window",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

/// A rollout as `GET /rollouts/{id}` shows it: what was asked, where it stands, every step
/// with its clusters, and why each transition happened.
#[derive(Object, Clone, Debug, PartialEq)]
pub struct Rollout {
    #[oai(flatten)]
    pub spec: RolloutSpec,
    pub state: RolloutState,
    /// The step in progress (index into `steps`); absent before the start and after the end.
    #[oai(skip_serializing_if_is_none)]
    pub current_step: Option<u32>,
    /// RFC 3339 times.
    pub created_at: String,
    #[oai(skip_serializing_if_is_none)]
    pub started_at: Option<String>,
    #[oai(skip_serializing_if_is_none)]
    pub finished_at: Option<String>,
    /// Clusters per state, over the whole rollout.
    pub counts: ClusterCounts,
    /// Steps in order; on `GET /rollouts` without their clusters.
    pub steps: Vec<RolloutStep>,
    /// Clusters no step contains: pinned ones and those no wave selects.
    pub not_in_steps: Vec<RolloutCluster>,
    /// Clusters that would be skipped as stale if their step started now (a plan), or that
    /// were skipped as stale (a started rollout).
    pub stale: Vec<String>,
    /// After promotion: clusters that kept their previous values as per-cluster overrides
    /// (the rollout did not move them), so no feed changed.
    pub kept_previous: Vec<KeptValues>,
    pub transitions: Vec<Transition>,
}

/// Clusters of a rollout per state.
#[derive(Object, Clone, Debug, Default, PartialEq)]
pub struct ClusterCounts {
    pub pending: u64,
    pub progressing: u64,
    pub passed: u64,
    pub failed: u64,
    pub skipped: u64,
    pub pinned: u64,
    pub unselected: u64,
    pub rolled_back: u64,
    pub waiting_window: u64,
}

impl ClusterCounts {
    pub fn add(&mut self, state: ClusterState) {
        self.add_n(state, 1);
    }

    pub fn add_n(&mut self, state: ClusterState, n: u64) {
        *match state {
            ClusterState::Pending => &mut self.pending,
            ClusterState::Progressing => &mut self.progressing,
            ClusterState::Passed => &mut self.passed,
            ClusterState::Failed => &mut self.failed,
            ClusterState::Skipped => &mut self.skipped,
            ClusterState::Pinned => &mut self.pinned,
            ClusterState::Unselected => &mut self.unselected,
            ClusterState::RolledBack => &mut self.rolled_back,
            ClusterState::WaitingWindow => &mut self.waiting_window,
        } += n;
    }

    pub fn get(&self, state: ClusterState) -> u64 {
        match state {
            ClusterState::Pending => self.pending,
            ClusterState::Progressing => self.progressing,
            ClusterState::Passed => self.passed,
            ClusterState::Failed => self.failed,
            ClusterState::Skipped => self.skipped,
            ClusterState::Pinned => self.pinned,
            ClusterState::Unselected => self.unselected,
            ClusterState::RolledBack => self.rolled_back,
            ClusterState::WaitingWindow => self.waiting_window,
        }
    }
}

/// One step: a wave, or a batch of one.
#[derive(Object, Clone, Debug, PartialEq)]
pub struct RolloutStep {
    pub step: u32,
    /// Index of the wave it comes from.
    pub wave: u32,
    pub state: StepState,
    /// When its clusters got the target.
    #[oai(skip_serializing_if_is_none)]
    pub started_at: Option<String>,
    /// Clusters not passed by then count as failures.
    #[oai(skip_serializing_if_is_none)]
    pub deadline_at: Option<String>,
    /// When its gate passed.
    #[oai(skip_serializing_if_is_none)]
    pub passed_at: Option<String>,
    /// When its bake time ends.
    #[oai(skip_serializing_if_is_none)]
    pub bake_until: Option<String>,
    pub counts: ClusterCounts,
    pub clusters: Vec<RolloutCluster>,
}

impl RolloutStep {
    /// Clusters in the step, whatever their state.
    pub fn clusters_total(&self) -> u64 {
        ClusterState::ALL.iter().map(|s| self.counts.get(*s)).sum()
    }
}

/// One cluster in a rollout.
#[derive(Object, Clone, Debug, PartialEq)]
pub struct RolloutCluster {
    pub id: String,
    pub cluster_dns: String,
    pub state: ClusterState,
    /// Why it is in this state (a report's reason, `Timeout`, `stale`, `edited by hand` …).
    #[oai(skip_serializing_if_is_none)]
    pub reason: Option<String>,
    #[oai(skip_serializing_if_is_none)]
    pub message: Option<String>,
    /// `waiting_window`: when its window opens (RFC 3339).
    #[oai(skip_serializing_if_is_none)]
    pub window_opens_at: Option<String>,
}

/// A cluster left on its previous values at promotion.
#[derive(Object, Clone, Debug, PartialEq)]
pub struct KeptValues {
    pub cluster: String,
    pub oci_tag: String,
    #[oai(skip_serializing_if_is_none)]
    pub component_path: Option<String>,
}

/// A change of the rollout's state or of a step, and why.
#[derive(Object, Clone, Debug, PartialEq)]
pub struct Transition {
    pub at: String,
    /// The rollout's state after it.
    pub state: RolloutState,
    /// The step it concerns, if one.
    #[oai(skip_serializing_if_is_none)]
    pub step: Option<u32>,
    /// `rollout` for the controller, else the token's name.
    pub actor: String,
    pub reason: String,
}

/// A cluster that uses the component, as planning sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct Candidate {
    pub id: String,
    pub cluster_dns: String,
    pub environment: Environment,
    pub labels: BTreeMap<String, String>,
    /// Its `oci_tag` for the component is set above the layer the rollout promotes into: by
    /// the cluster itself, or by an overlay (above the rollout's overlay, if it names one).
    pub pinned: bool,
}

impl Wave {
    pub fn selects(&self, cluster: &Candidate) -> bool {
        self.environment.is_none_or(|e| e == cluster.environment)
            && self
                .labels
                .iter()
                .all(|(k, v)| cluster.labels.get(k) == Some(v))
            && (self.clusters.is_empty() || self.clusters.contains(&cluster.id))
    }

    fn is_empty(&self) -> bool {
        self.environment.is_none() && self.labels.is_empty() && self.clusters.is_empty()
    }
}

/// The clusters of a rollout by role: steps in order, each with its wave and cluster ids.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Plan {
    pub steps: Vec<PlannedStep>,
    pub pinned: Vec<usize>,
    pub unselected: Vec<usize>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct PlannedStep {
    pub wave: usize,
    /// Indexes into the candidates.
    pub clusters: Vec<usize>,
}

impl Plan {
    /// Each candidate goes to the first wave that selects it (pinned ones aside unless
    /// `include_pinned`); waves split into steps of `batch`; waves selecting nobody make no
    /// step. Candidates keep their order (cluster id order) inside a step.
    pub fn new(spec: &RolloutSpec, candidates: &[Candidate]) -> Plan {
        let mut plan = Plan::default();
        let mut by_wave: Vec<Vec<usize>> = vec![Vec::new(); spec.waves.len()];
        for (index, cluster) in candidates.iter().enumerate() {
            if cluster.pinned && !spec.include_pinned {
                plan.pinned.push(index);
                continue;
            }
            match spec.waves.iter().position(|wave| wave.selects(cluster)) {
                Some(wave) => by_wave[wave].push(index),
                None => plan.unselected.push(index),
            }
        }
        for (wave, clusters) in by_wave.into_iter().enumerate() {
            let batch = spec.waves[wave]
                .batch
                .map_or(clusters.len().max(1), |b| b as usize);
            for chunk in clusters.chunks(batch) {
                plan.steps.push(PlannedStep {
                    wave,
                    clusters: chunk.to_vec(),
                });
            }
        }
        plan
    }
}

/// Checks of a rollout request that need no database.
pub fn validate(spec: &RolloutSpec) -> Result<(), AppError> {
    let mut problems = Vec::new();
    if spec.target.oci_tag.trim().is_empty() {
        problems.push("target.oci_tag must not be empty".to_owned());
    }
    if spec
        .target
        .component_path
        .as_deref()
        .is_some_and(|p| p.trim().is_empty())
    {
        problems.push("target.component_path must not be empty when given".to_owned());
    }
    if spec.waves.len() > MAX_WAVES {
        problems.push(format!("at most {MAX_WAVES} waves"));
    }
    for (index, wave) in spec.waves.iter().enumerate() {
        if wave.is_empty() {
            problems.push(format!(
                "waves[{index}] selects nothing: give environment, labels or clusters"
            ));
        }
        if wave.clusters.len() > MAX_WAVE_CLUSTERS {
            problems.push(format!(
                "waves[{index}].clusters names more than {MAX_WAVE_CLUSTERS} clusters"
            ));
        }
        for (key, value) in &wave.labels {
            if !super::names::is_metadata_key(key) || !super::names::is_label_value(value) {
                problems.push(format!(
                    "waves[{index}].labels: '{key}={value}' is not a Kubernetes label"
                ));
            }
        }
        if wave.batch == Some(0) {
            problems.push(format!("waves[{index}].batch must be at least 1"));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(AppError::Validation(problems.join("; ")))
    }
}

/// How one cluster of a started step stands against the gate, from what it reported.
#[derive(Clone, Debug, PartialEq)]
pub enum Verdict {
    Passed,
    Failed { reason: String, message: String },
    Waiting,
}

/// What the controller knows of a cluster that has the target.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Observation<'a> {
    /// The component's convergence state on the cluster (README, "Flux reports back"), judged against the target.
    pub state: super::report::State,
    /// The reason and message of the failure, when failed.
    pub reason: Option<&'a str>,
    pub message: Option<&'a str>,
    /// The decisive report was authenticated as the cluster itself.
    pub by_cluster: bool,
    /// The cluster's last poll of its platform-components feed (Unix seconds).
    pub last_poll: Option<u64>,
}

/// The gate on one cluster, `started_at` being when its step gave it the target.
pub fn judge(
    gate: Gate,
    seen: &Observation<'_>,
    only_cluster_reports: bool,
    started_at: u64,
    deadline: u64,
    now: u64,
) -> Verdict {
    use super::report::State;
    let counted = seen.by_cluster || !only_cluster_reports;
    // A failure counts whatever the gate: a fleet that gates on polls may still report.
    if counted && seen.state == State::Failed {
        return Verdict::Failed {
            reason: seen.reason.unwrap_or("Failed").to_owned(),
            message: seen.message.unwrap_or_default().to_owned(),
        };
    }
    let passed = match gate {
        Gate::Reported => counted && seen.state == State::Converged,
        // Poll times have whole seconds: a poll in the second the step started may have
        // come before its write.
        Gate::Polled => seen.last_poll.is_some_and(|at| at > started_at),
    };
    if passed {
        return Verdict::Passed;
    }
    if now >= deadline {
        return Verdict::Failed {
            reason: "Timeout".to_owned(),
            message: format!(
                "not passed within wave_timeout_seconds ({} s); last known state: {}",
                deadline.saturating_sub(started_at),
                seen.state
            ),
        };
    }
    Verdict::Waiting
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::report::State;

    fn candidate(id: &str, environment: Environment, labels: &[(&str, &str)]) -> Candidate {
        Candidate {
            id: id.into(),
            cluster_dns: format!("{id}.example"),
            environment,
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            pinned: false,
        }
    }

    fn spec(waves: Vec<Wave>) -> RolloutSpec {
        RolloutSpec {
            id: "r".into(),
            component: "c".into(),
            target: RolloutTarget {
                oci_tag: "2.0.0".into(),
                component_path: None,
                component_version: None,
            },
            waves,
            gate: Gate::Reported,
            bake_seconds: 0,
            wave_timeout_seconds: 60,
            max_failures: 0,
            on_failure: OnFailure::Pause,
            include_pinned: false,
            overlay: None,
        }
    }

    #[test]
    fn a_cluster_joins_the_first_wave_that_selects_it_and_batches_split_waves() {
        let mut clusters = vec![
            candidate("a", Environment::Dev, &[]),
            candidate("b", Environment::Prod, &[("canary", "true")]),
            candidate("c", Environment::Prod, &[]),
            candidate("d", Environment::Prod, &[]),
            candidate("e", Environment::Prod, &[]),
            candidate("f", Environment::Uat, &[]),
            candidate("g", Environment::Qa, &[]),
        ];
        clusters[6].pinned = true;
        let plan = Plan::new(
            &spec(vec![
                Wave {
                    environment: Some(Environment::Dev),
                    ..Wave::default()
                },
                Wave {
                    labels: [("canary".into(), "true".into())].into(),
                    ..Wave::default()
                },
                Wave {
                    environment: Some(Environment::Prod),
                    batch: Some(2),
                    ..Wave::default()
                },
            ]),
            &clusters,
        );
        let ids = |list: &[usize]| -> Vec<&str> {
            list.iter().map(|&i| clusters[i].id.as_str()).collect()
        };
        let steps: Vec<(usize, Vec<&str>)> = plan
            .steps
            .iter()
            .map(|s| (s.wave, ids(&s.clusters)))
            .collect();
        assert_eq!(
            steps,
            vec![
                (0, vec!["a"]),
                (1, vec!["b"]),
                (2, vec!["c", "d"]),
                (2, vec!["e"])
            ]
        );
        assert_eq!(ids(&plan.unselected), vec!["f"]);
        assert_eq!(ids(&plan.pinned), vec!["g"]);
    }

    fn waiting_record(opens_at: Option<i64>) -> RolloutRecord {
        let cluster = |id: &str, state, opens| ClusterRecord {
            cluster_id: id.into(),
            cluster_dns: format!("{id}.example.com"),
            step: Some(0),
            state,
            reason: None,
            message: None,
            changed: state != ClusterState::WaitingWindow,
            planned: Overrides::default(),
            previous: Overrides::default(),
            added: false,
            window_opens_at: opens,
        };
        RolloutRecord {
            spec: spec(vec![Wave::default()]),
            state: RolloutState::Running,
            current_step: Some(0),
            created_at: 0,
            started_at: Some(0),
            finished_at: None,
            kept: Vec::new(),
            steps: vec![StepRecord {
                step: 0,
                wave: 0,
                state: StepState::Waiting,
                started_at: Some(0),
                deadline_at: Some(60),
                passed_at: None,
                bake_until: None,
            }],
            clusters: vec![
                cluster("skipped", ClusterState::Skipped, None),
                cluster("store", ClusterState::WaitingWindow, opens_at),
            ],
        }
    }

    #[test]
    fn a_waiting_cluster_holds_its_step_until_its_window_opens_and_the_controller_sleeps_till_then()
    {
        let record = waiting_record(Some(36_000));
        let seen = std::collections::HashMap::new();
        // Long after the step's deadline: no failure, no gate, nothing to do.
        let decision = decide(&record, &seen, false, 20_000);
        assert_eq!(decision.next, Next::Stay);
        assert_eq!(decision.step, None, "the step neither passes nor fails");
        assert!(decision.clusters.is_empty());
        // Nothing to judge: the next look is when the window opens, not in a second.
        assert_eq!(next_look(&record, 20_000, 1), Some(36_000));
        // At the opening the step starts again for it.
        assert_eq!(
            decide(&record, &seen, false, 36_000).next,
            Next::StartStep(0)
        );
        // A window written meanwhile (opening unknown): look at once.
        let record = waiting_record(None);
        assert_eq!(
            decide(&record, &seen, false, 20_000).next,
            Next::StartStep(0)
        );
        assert_eq!(next_look(&record, 20_000, 1), Some(20_000));
    }

    #[test]
    fn every_criterion_of_a_wave_must_match() {
        let wave = Wave {
            environment: Some(Environment::Prod),
            labels: [("region".into(), "eu".into())].into(),
            clusters: vec!["a".into()],
            batch: None,
        };
        assert!(wave.selects(&candidate("a", Environment::Prod, &[("region", "eu")])));
        assert!(!wave.selects(&candidate("a", Environment::Qa, &[("region", "eu")])));
        assert!(!wave.selects(&candidate("a", Environment::Prod, &[("region", "us")])));
        assert!(!wave.selects(&candidate("b", Environment::Prod, &[("region", "eu")])));
    }

    #[test]
    fn verbs_move_only_from_the_states_they_name() {
        use RolloutState::*;
        assert_eq!(Verb::Start.transition(Planned).unwrap(), Running);
        assert_eq!(Verb::Resume.transition(Paused).unwrap(), Running);
        assert_eq!(Verb::Rollback.transition(Paused).unwrap(), RolledBack);
        assert_eq!(Verb::Rollback.transition(Aborted).unwrap(), RolledBack);
        for (verb, from) in [
            (Verb::Start, Running),
            (Verb::Pause, Paused),
            (Verb::Resume, Running),
            (Verb::Abort, Succeeded),
            (Verb::Rollback, Planned),
            (Verb::Rollback, Succeeded),
        ] {
            assert!(
                matches!(verb.transition(from), Err(AppError::Conflict(_))),
                "{verb:?} from {from:?}"
            );
        }
    }

    #[test]
    fn the_gate_passes_on_convergence_or_a_later_poll_and_fails_on_failure_or_timeout() {
        let seen = |state, by_cluster, last_poll| Observation {
            state,
            reason: Some("UpgradeFailed"),
            message: Some("boom"),
            by_cluster,
            last_poll,
        };
        let reported =
            |s: &Observation<'_>, only, now| judge(Gate::Reported, s, only, 100, 160, now);
        assert_eq!(
            reported(&seen(State::Converged, true, None), true, 110),
            Verdict::Passed
        );
        assert_eq!(
            reported(&seen(State::Converged, false, None), true, 110),
            Verdict::Waiting,
            "a report on another's behalf does not count when identity is required"
        );
        assert_eq!(
            reported(&seen(State::Converged, false, None), false, 110),
            Verdict::Passed
        );
        assert!(matches!(
            reported(&seen(State::Failed, true, None), true, 110),
            Verdict::Failed { reason, .. } if reason == "UpgradeFailed"
        ));
        assert_eq!(
            reported(&seen(State::Progressing, true, None), true, 159),
            Verdict::Waiting
        );
        assert!(matches!(
            reported(&seen(State::Progressing, true, None), true, 160),
            Verdict::Failed { reason, .. } if reason == "Timeout"
        ));
        let polled = |last| {
            judge(
                Gate::Polled,
                &seen(State::Unknown, false, last),
                true,
                100,
                160,
                120,
            )
        };
        assert_eq!(
            polled(Some(100)),
            Verdict::Waiting,
            "same second as the write"
        );
        assert_eq!(polled(Some(101)), Verdict::Passed);
        assert_eq!(polled(None), Verdict::Waiting);
        assert!(
            matches!(
                judge(
                    Gate::Polled,
                    &seen(State::Failed, true, Some(150)),
                    true,
                    100,
                    160,
                    120
                ),
                Verdict::Failed { .. }
            ),
            "a reported failure counts under the polled gate too"
        );
    }

    #[test]
    fn a_wave_must_select_something() {
        let err = validate(&spec(vec![Wave::default()])).unwrap_err();
        assert!(
            err.to_string().contains("waves[0] selects nothing"),
            "{err}"
        );
    }
}
