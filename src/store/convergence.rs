//! Convergence queries: what each cluster polls and reports against what it should run, one
//! cluster, one component or the whole fleet, read in one transaction. The API
//! (`/status/...`), the console and `flux-inputs status` are views over these.

use std::collections::BTreeMap;

use super::Store;
use super::clusters;
use super::polls::{Poll, PollTracker, operator_version};
use super::reports::{self, ComponentRow, Scope, StoredEvent};
use crate::domain::convergence::*;
use crate::domain::report::{self};

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
pub fn poll_view(store: &Store, cluster_dns: &str, now: u64) -> (FeedPolls, Option<String>, bool) {
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

/// Stale clusters listed by `/status/fleet` (the count covers all).
pub const STALE_LISTED: usize = 1000;

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
pub async fn with_convergence<T, F>(store: &Store, scope: Scope, view: F) -> crate::error::Result<T>
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
