//! Convergence as the API, the console and the command line show it: per cluster its polls
//! and, per component, desired against reported state; per component and environment,
//! clusters per state. The states themselves are `report`'s; the queries are
//! `store::convergence`'s.

use std::collections::BTreeMap;

use poem_openapi::Object;

use super::report::State;

/// The last poll of one feed.
#[derive(Object, Clone, Debug)]
pub struct FeedPoll {
    /// When, in Unix seconds.
    pub at: u64,
    /// Seconds before this answer.
    pub seconds_ago: u64,
    /// The client's `User-Agent` (Flux sends `flux-operator/<version>`).
    pub user_agent: String,
}

/// The last poll of each feed; `null` when the feed was never polled.
#[derive(Object, Clone, Debug)]
pub struct FeedPolls {
    #[oai(rename = "platform-components", nullable)]
    pub platform_components: Option<FeedPoll>,
    #[oai(nullable)]
    pub namespaces: Option<FeedPoll>,
    #[oai(nullable)]
    pub rolebindings: Option<FeedPoll>,
}

#[derive(Object, Clone, Debug)]
pub struct ClusterStatus {
    pub id: String,
    pub cluster_dns: String,
    pub environment: String,
    pub polls: FeedPolls,
    /// From the most recent poll's `User-Agent`, when it is Flux Operator's.
    #[oai(nullable)]
    pub operator_version: Option<String>,
    /// No poll within the configured window (`poll_stale_after`), or never polled.
    pub stale: bool,
}

/// Desired against reported for one component of one cluster.
#[derive(Object, Clone, Debug)]
pub struct ComponentConvergence {
    pub component: String,
    pub enabled: bool,
    /// The feed's `source.oci_tag`.
    pub desired_version: String,
    /// The chart version of the latest decisive report.
    #[oai(nullable)]
    pub reported_revision: Option<String>,
    pub state: State,
    /// Reason of the latest decisive report (`UpgradeFailed`, …).
    #[oai(nullable)]
    pub reason: Option<String>,
    #[oai(nullable)]
    pub message: Option<String>,
    /// When that report's event happened (RFC 3339).
    #[oai(nullable)]
    pub event_time: Option<String>,
    /// How that report was authenticated: `cluster`, `fleet` or `write`.
    #[oai(nullable)]
    pub authenticated_as: Option<String>,
}

/// One received event.
#[derive(Object, Clone, Debug)]
pub struct ReceivedEvent {
    /// The event's own time (RFC 3339).
    pub time: String,
    /// When it arrived (RFC 3339).
    pub received: String,
    pub kind: String,
    pub namespace: String,
    pub name: String,
    pub severity: String,
    pub reason: String,
    /// The first 2 KiB.
    pub message: String,
    #[oai(nullable)]
    pub revision: Option<String>,
    #[oai(nullable)]
    pub component: Option<String>,
    /// `cluster`, `fleet` or `write`.
    pub authenticated_as: String,
}

/// What one cluster runs compared with what it should run.
#[derive(Object, Clone, Debug)]
pub struct ClusterConvergence {
    pub id: String,
    pub cluster_dns: String,
    pub environment: String,
    /// No poll within `poll_stale_after`: every enabled component is `stale`.
    pub stale: bool,
    pub polls: FeedPolls,
    #[oai(nullable)]
    pub operator_version: Option<String>,
    /// In feed order.
    pub components: Vec<ComponentConvergence>,
    /// The last events received (at most 100), newest first.
    pub events: Vec<ReceivedEvent>,
}

/// Clusters per state.
#[derive(Object, Clone, Debug, Default, PartialEq)]
pub struct StateCounts {
    pub converged: u64,
    pub progressing: u64,
    pub failed: u64,
    pub unknown: u64,
    pub disabled: u64,
    pub stale: u64,
}

impl StateCounts {
    pub fn add(&mut self, state: State) {
        *match state {
            State::Converged => &mut self.converged,
            State::Progressing => &mut self.progressing,
            State::Failed => &mut self.failed,
            State::Unknown => &mut self.unknown,
            State::Disabled => &mut self.disabled,
            State::Stale => &mut self.stale,
        } += 1;
    }

    pub fn merge(&mut self, other: &StateCounts) {
        self.converged += other.converged;
        self.progressing += other.progressing;
        self.failed += other.failed;
        self.unknown += other.unknown;
        self.disabled += other.disabled;
        self.stale += other.stale;
    }

    pub fn get(&self, state: State) -> u64 {
        match state {
            State::Converged => self.converged,
            State::Progressing => self.progressing,
            State::Failed => self.failed,
            State::Unknown => self.unknown,
            State::Disabled => self.disabled,
            State::Stale => self.stale,
        }
    }
}

/// One cluster's state for the component.
#[derive(Object, Clone, Debug)]
pub struct ClusterComponentState {
    pub cluster: String,
    pub cluster_dns: String,
    pub environment: String,
    #[oai(flatten)]
    pub convergence: ComponentConvergence,
}

/// One component across the fleet.
#[derive(Object, Clone, Debug)]
pub struct ComponentFleetStatus {
    pub component: String,
    /// Clusters that have the component (after the `environment` filter).
    pub clusters: u64,
    /// Per state, over those clusters.
    pub counts: StateCounts,
    /// Clusters per reported revision (as reported, `v` and build suffix kept); clusters that
    /// reported nothing decisive are not counted.
    pub revisions: BTreeMap<String, u64>,
    /// The clusters matching `state`, paged by `limit` and `offset`, ordered by id.
    pub items: Vec<ClusterComponentState>,
}

/// Counts of one component in one environment.
#[derive(Object, Clone, Debug)]
pub struct EnvironmentCounts {
    pub environment: String,
    pub counts: StateCounts,
}

/// One component over the fleet, by environment.
#[derive(Object, Clone, Debug)]
pub struct ComponentSummary {
    pub component: String,
    /// Over every environment.
    pub counts: StateCounts,
    pub environments: Vec<EnvironmentCounts>,
}

/// The fleet at a glance.
#[derive(Object, Clone, Debug)]
pub struct FleetStatus {
    pub clusters: u64,
    /// Components by id.
    pub components: Vec<ComponentSummary>,
    /// How many clusters have not polled within `poll_stale_after`.
    pub stale_count: u64,
    /// Their ids (the first 1,000, by id).
    pub stale_clusters: Vec<String>,
}
