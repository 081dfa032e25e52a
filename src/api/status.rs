//! `/status/clusters`: which clusters poll, how recently, with which Flux Operator version,
//! and which stopped (no poll within `poll_stale_after`).

use poem::web::Data;
use poem_openapi::param::Query;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};

use std::collections::BTreeMap;

use poem_openapi::param::Path;

use super::ApiTags;
use super::auth::{ReadAccess, StatusAccess};
use super::error::{ErrorBody, ReadError};
use crate::domain::model::Environment;
use crate::domain::report::format_timestamp;
use crate::domain::report::{self, State};
use crate::error::AppError;
use crate::store::Store;
use crate::store::clusters;
use crate::store::polls::{Poll, PollTracker, operator_version};
use crate::store::reports::{self, ComponentRow, Scope, StoredEvent};

pub struct StatusApi;

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

#[derive(ApiResponse)]
pub enum StatusResponse {
    /// Every cluster (or the stale ones), ordered by id.
    #[oai(status = 200)]
    Ok(Json<Vec<ClusterStatus>>),
}

/// Every cluster's poll status, ordered by id.
pub async fn cluster_statuses(store: &Store) -> crate::error::Result<Vec<ClusterStatus>> {
    let headers = store
        .read(|conn| clusters::list_headers(conn, &Default::default()))
        .await?;
    let now = store.clock().now_u64();
    Ok(headers
        .into_iter()
        .map(|cluster| {
            let (polls, operator_version, stale) = poll_view(store, &cluster.cluster_dns, now);
            ClusterStatus {
                operator_version,
                stale,
                polls,
                environment: cluster.environment.as_str().to_owned(),
                cluster_dns: cluster.cluster_dns,
                id: cluster.id,
            }
        })
        .collect())
}

/// Desired against reported per component of one cluster, its polls and its last events, in
/// one read (also the console's cluster page).
pub async fn cluster_convergence(
    store: &Store,
    cluster: crate::domain::model::Cluster,
) -> crate::error::Result<ClusterConvergence> {
    let scope = Scope {
        cluster: Some(cluster.id.clone()),
        ..Scope::default()
    };
    let dns = cluster.cluster_dns.clone();
    let (components, events) = with_convergence(store, scope, move |conn, scope, polls, now| {
        let mut components = Vec::new();
        reports::for_each_component(conn, scope, polls, now, |row| {
            components.push(ComponentConvergence::from(row));
        })?;
        let events = reports::events(conn, &dns, reports::EVENTS_PER_CLUSTER)?;
        Ok((components, events))
    })
    .await?;
    let (polls, operator_version, stale) =
        poll_view(store, &cluster.cluster_dns, store.clock().now_u64());
    Ok(ClusterConvergence {
        id: cluster.id,
        cluster_dns: cluster.cluster_dns,
        environment: cluster.environment.as_str().to_owned(),
        stale,
        polls,
        operator_version,
        components,
        events: events.into_iter().map(ReceivedEvent::from).collect(),
    })
}

/// A cluster's last polls, the Flux Operator version of the latest, and whether it is stale.
fn poll_view(store: &Store, cluster_dns: &str, now: u64) -> (FeedPolls, Option<String>, bool) {
    let tracker = store.polls();
    let polls = tracker.get(cluster_dns);
    let view = |poll: &Option<Poll>| {
        poll.as_ref().map(|p| FeedPoll {
            at: p.at,
            seconds_ago: now.saturating_sub(p.at),
            user_agent: p.user_agent.to_string(),
        })
    };
    let latest = polls.iter().flatten().max_by_key(|p| p.at);
    (
        FeedPolls {
            platform_components: view(&polls[0]),
            namespaces: view(&polls[1]),
            rolebindings: view(&polls[2]),
        },
        latest
            .and_then(|p| operator_version(&p.user_agent))
            .map(str::to_owned),
        tracker.is_stale(&polls, now),
    )
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

impl From<&ComponentRow<'_>> for ComponentConvergence {
    fn from(row: &ComponentRow<'_>) -> Self {
        ComponentConvergence {
            component: row.component.to_owned(),
            enabled: row.enabled,
            desired_version: row.desired.to_owned(),
            reported_revision: row.reported_revision.map(str::to_owned),
            state: row.state,
            reason: row.reason.map(str::to_owned),
            message: row.message.map(str::to_owned),
            event_time: row.event_at.map(report::format_timestamp),
            authenticated_as: row.via.map(|v| v.as_str().to_owned()),
        }
    }
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

impl From<StoredEvent> for ReceivedEvent {
    fn from(e: StoredEvent) -> Self {
        ReceivedEvent {
            time: report::format_timestamp(e.event_at),
            received: report::format_timestamp(e.received_at),
            kind: e.kind,
            namespace: e.namespace,
            name: e.name,
            severity: e.severity.as_str().to_owned(),
            reason: e.reason,
            message: e.message,
            revision: e.revision,
            component: e.component,
            authenticated_as: e.via.as_str().to_owned(),
        }
    }
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

#[derive(ApiResponse)]
pub enum ClusterConvergenceResponse {
    #[oai(status = 200)]
    Ok(Json<ClusterConvergence>),
}

#[derive(ApiResponse)]
pub enum ComponentStatusResponse {
    #[oai(status = 200)]
    Ok(Json<ComponentFleetStatus>),
}

#[derive(ApiResponse)]
pub enum FleetStatusResponse {
    #[oai(status = 200)]
    Ok(Json<FleetStatus>),
}

/// Stale clusters listed by `/status/fleet` (the count covers all).
const STALE_LISTED: usize = 1000;

fn forbidden(message: String) -> ReadError {
    ReadError::Forbidden(Json(ErrorBody {
        error: "forbidden".into(),
        message,
    }))
}

/// The fleet summary of `scope`: per component and environment, counts per state, and the
/// stale clusters. Streams the rows: memory is per component and environment, not per row.
pub fn fleet_summary(
    conn: &rusqlite::Connection,
    scope: &Scope,
    polls: &crate::store::polls::PollTracker,
    now: u64,
) -> crate::error::Result<FleetStatus> {
    let mut by_component: BTreeMap<String, BTreeMap<String, StateCounts>> = BTreeMap::new();
    reports::for_each_component(conn, scope, polls, now, |row| {
        if !by_component.contains_key(row.component) {
            by_component.insert(row.component.to_owned(), BTreeMap::new());
        }
        let environments = by_component.get_mut(row.component).expect("inserted above");
        if !environments.contains_key(row.environment) {
            environments.insert(row.environment.to_owned(), StateCounts::default());
        }
        environments
            .get_mut(row.environment)
            .expect("inserted above")
            .add(row.state);
    })?;
    let mut clusters = 0;
    let mut stale = Vec::new();
    let mut stale_count = 0;
    for (id, dns) in clusters::ids_and_dns(conn, scope.cluster_dns.as_deref())? {
        clusters += 1;
        if polls.is_stale(&polls.get(&dns), now) {
            stale_count += 1;
            if stale.len() < STALE_LISTED {
                stale.push(id);
            }
        }
    }
    let components = by_component
        .into_iter()
        .map(|(component, environments)| {
            let mut total = StateCounts::default();
            for counts in environments.values() {
                total.merge(counts);
            }
            ComponentSummary {
                component,
                counts: total,
                environments: environments
                    .into_iter()
                    .map(|(environment, counts)| EnvironmentCounts {
                        environment,
                        counts,
                    })
                    .collect(),
            }
        })
        .collect();
    Ok(FleetStatus {
        clusters,
        components,
        stale_count,
        stale_clusters: stale,
    })
}

/// Runs `view` over the convergence rows of `scope` on a pooled connection. Every event
/// answered `202` before is committed, so the answer includes it.
async fn with_convergence<T, F>(store: &Store, scope: Scope, view: F) -> crate::error::Result<T>
where
    T: Send + 'static,
    F: FnOnce(&rusqlite::Connection, &Scope, &PollTracker, u64) -> crate::error::Result<T>
        + Send
        + 'static,
{
    let polls = store.polls().clone();
    let now = store.clock().now_u64();
    store
        .read(move |conn| view(conn, &scope, &polls, now))
        .await
}

#[OpenApi(tag = "ApiTags::Service")]
impl StatusApi {
    /// Poll liveness of every cluster
    ///
    /// When each cluster last fetched each feed, with which client, and whether it stopped
    /// polling. Kept in memory and saved every 30 s, so it survives restarts.
    #[oai(path = "/status/clusters", method = "get")]
    async fn clusters(
        &self,
        _auth: ReadAccess,
        store: Data<&Store>,
        /// Only stale (`true`) or only live (`false`) clusters.
        stale: Query<Option<bool>>,
    ) -> Result<StatusResponse, ReadError> {
        let mut statuses = cluster_statuses(&store).await?;
        if let Some(wanted) = stale.0 {
            statuses.retain(|s| s.stale == wanted);
        }
        Ok(StatusResponse::Ok(Json(statuses)))
    }

    /// Desired against reported state of one cluster
    ///
    /// Per component: the desired version (the feed's `oci_tag`), the latest reported
    /// revision, the state, and the reason and message of the report that decided it; the
    /// last poll of each feed; the last events. A cluster-scoped token sees only its own.
    #[oai(path = "/status/clusters/:id", method = "get", tag = "ApiTags::Status")]
    async fn cluster(
        &self,
        auth: StatusAccess,
        store: Data<&Store>,
        /// The cluster's id.
        id: Path<String>,
    ) -> Result<ClusterConvergenceResponse, ReadError> {
        let lookup = id.0.clone();
        let cluster = store
            .read(move |conn| clusters::get(conn, &lookup))
            .await?
            .ok_or_else(|| AppError::NotFound(format!("no cluster with id '{}'", id.0)))?;
        if let Some(own) = &auth.0
            && **own != *cluster.cluster_dns
        {
            return Err(forbidden(format!(
                "this token may see only the cluster with cluster_dns {own}"
            )));
        }
        Ok(ClusterConvergenceResponse::Ok(Json(
            cluster_convergence(&store, cluster).await?,
        )))
    }

    /// One component across the fleet
    ///
    /// Counts per state and per reported revision over the clusters that have the component
    /// (optionally of one environment), and those clusters, filtered by `state` and paged.
    #[oai(
        path = "/status/components/:id",
        method = "get",
        tag = "ApiTags::Status"
    )]
    async fn component(
        &self,
        auth: StatusAccess,
        store: Data<&Store>,
        /// The component's id.
        id: Path<String>,
        /// Only clusters in this state.
        state: Query<Option<State>>,
        /// Only clusters of this environment tier.
        environment: Query<Option<Environment>>,
        /// At most this many clusters in `items` (default 100).
        #[oai(validator(minimum(value = "0"), maximum(value = "10000")))]
        limit: Query<Option<u32>>,
        /// Skip this many of the matching clusters.
        #[oai(validator(minimum(value = "0"), maximum(value = "4294967295")))]
        offset: Query<Option<u32>>,
    ) -> Result<ComponentStatusResponse, ReadError> {
        let lookup = id.0.clone();
        if !store
            .read(move |conn| reports::component_exists(conn, &lookup))
            .await?
        {
            return Err(
                AppError::NotFound(format!("no platform component with id '{}'", id.0)).into(),
            );
        }
        let scope = Scope {
            component: Some(id.0.clone()),
            cluster_dns: auth.0.as_deref().map(str::to_owned),
            ..Scope::default()
        };
        let wanted = state.0;
        let environment = environment.0;
        let (skip, take) = (
            offset.0.unwrap_or(0) as usize,
            limit.0.unwrap_or(100) as usize,
        );
        // Counted while streaming; only the requested page is kept.
        let (clusters, counts, revisions, items) =
            with_convergence(&store, scope, move |conn, scope, polls, now| {
                let mut clusters = 0u64;
                let mut counts = StateCounts::default();
                let mut revisions: BTreeMap<String, u64> = BTreeMap::new();
                let mut matching = 0usize;
                let mut items = Vec::new();
                reports::for_each_component(conn, scope, polls, now, |row| {
                    if environment.is_some_and(|e| e.as_str() != row.environment) {
                        return;
                    }
                    clusters += 1;
                    counts.add(row.state);
                    if let Some(revision) = row.reported_revision {
                        match revisions.get_mut(revision) {
                            Some(n) => *n += 1,
                            None => {
                                revisions.insert(revision.to_owned(), 1);
                            }
                        }
                    }
                    if wanted.is_none_or(|w| row.state == w) {
                        if matching >= skip && items.len() < take {
                            items.push(ClusterComponentState {
                                cluster: row.cluster_id.to_owned(),
                                cluster_dns: row.cluster_dns.to_owned(),
                                environment: row.environment.to_owned(),
                                convergence: row.into(),
                            });
                        }
                        matching += 1;
                    }
                })?;
                Ok((clusters, counts, revisions, items))
            })
            .await?;
        Ok(ComponentStatusResponse::Ok(Json(ComponentFleetStatus {
            component: id.0,
            clusters,
            counts,
            revisions,
            items,
        })))
    }

    /// The fleet at a glance
    ///
    /// Per component and environment, clusters per state; and the clusters that stopped
    /// polling. A cluster-scoped token sees its own cluster only.
    #[oai(path = "/status/fleet", method = "get", tag = "ApiTags::Status")]
    async fn fleet(
        &self,
        auth: StatusAccess,
        store: Data<&Store>,
    ) -> Result<FleetStatusResponse, ReadError> {
        let scope = Scope {
            cluster_dns: auth.0.as_deref().map(str::to_owned),
            ..Scope::default()
        };
        let polls = store.polls().clone();
        let now = store.clock().now_u64();
        let summary = store
            .read(move |conn| fleet_summary(conn, &scope, &polls, now))
            .await?;
        Ok(FleetStatusResponse::Ok(Json(summary)))
    }

    /// Where this server stands in an edge topology
    ///
    /// `role`: `standalone`, `hub` (replicated by Litestream; writes a heartbeat every 30 s)
    /// or `replica` (serves a read-only copy). A replica says which copy it serves and how
    /// old the hub's heartbeat in it is; a hub, when it last wrote one.
    #[oai(path = "/status/replica", method = "get")]
    async fn replica(
        &self,
        _auth: ReadAccess,
        store: Data<&Store>,
    ) -> Result<ReplicaStatusResponse, ReadError> {
        let now = store.clock().now();
        let time = |at: Option<i64>| at.map(format_timestamp);
        let status = match store.replica() {
            Some(copy) => {
                let copy_status = copy.status();
                ReplicaStatus {
                    role: store.role().as_str().to_owned(),
                    hub_url: copy.hub_url.clone(),
                    loaded: copy_status.loaded_at.is_some(),
                    loaded_at: time(copy_status.loaded_at),
                    revision: copy_status.revision,
                    txid: copy_status.txid,
                    clusters: Some(copy_status.clusters as u64),
                    heartbeat_at: time(copy_status.heartbeat_at),
                    heartbeat_age_seconds: copy_status.heartbeat_at.map(|at| (now - at).max(0)),
                    last_error: copy_status.last_error,
                }
            }
            None => {
                let (revision, heartbeat_at) = store
                    .read(|conn| {
                        Ok((
                            crate::store::revision::revision(conn)?,
                            crate::store::replica::heartbeat(conn)?,
                        ))
                    })
                    .await?;
                ReplicaStatus {
                    role: store.role().as_str().to_owned(),
                    hub_url: None,
                    loaded: true,
                    loaded_at: None,
                    revision: Some(revision),
                    txid: None,
                    clusters: None,
                    heartbeat_at: time(heartbeat_at),
                    heartbeat_age_seconds: heartbeat_at.map(|at| (now - at).max(0)),
                    last_error: None,
                }
            }
        };
        Ok(ReplicaStatusResponse::Ok(Json(status)))
    }
}

/// `GET /status/replica`.
#[derive(Object, Clone, Debug)]
pub struct ReplicaStatus {
    /// `standalone`, `hub` or `replica`.
    pub role: String,
    /// A replica: where writes go.
    #[oai(skip_serializing_if_is_none)]
    pub hub_url: Option<String>,
    /// A replica: a consistent copy is loaded and served (`/ready` is 200).
    pub loaded: bool,
    /// A replica: when the copy served was loaded.
    #[oai(skip_serializing_if_is_none)]
    pub loaded_at: Option<String>,
    /// The inventory revision served.
    #[oai(skip_serializing_if_is_none)]
    pub revision: Option<i64>,
    /// A replica: Litestream's position (`<db>-txid`) when the copy was loaded.
    #[oai(skip_serializing_if_is_none)]
    pub txid: Option<String>,
    /// A replica: clusters in the copy.
    #[oai(skip_serializing_if_is_none)]
    pub clusters: Option<u64>,
    /// When the hub last wrote its heartbeat (on a replica: the one in its copy).
    #[oai(skip_serializing_if_is_none)]
    pub heartbeat_at: Option<String>,
    /// Seconds since then: how far behind the hub a replica's copy may be.
    #[oai(skip_serializing_if_is_none)]
    pub heartbeat_age_seconds: Option<i64>,
    /// A replica: why the last load failed (the last good copy is still served).
    #[oai(skip_serializing_if_is_none)]
    pub last_error: Option<String>,
}

#[derive(ApiResponse)]
pub enum ReplicaStatusResponse {
    /// This server's role and, for a replica, its copy.
    #[oai(status = 200)]
    Ok(Json<ReplicaStatus>),
}
