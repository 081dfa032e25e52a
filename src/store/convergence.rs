//! Convergence queries: what each cluster polls and reports against what it should run, one
//! cluster, one component or the whole fleet, read in one transaction. The API
//! (`/status/...`), the console and `flux-inputs status` are views over these.

use std::collections::HashMap;

use super::Store;
use super::clusters;
use super::polls::{Poll, PollTracker, operator_version};
use super::reports::{self, StoredEvent};
use super::sql::SqlResultExt;
use crate::domain::convergence::*;
use crate::domain::model::ComponentRef;
use crate::domain::overlay;
use crate::domain::report::{self};
use crate::domain::report::{Outcome, Reported, Settled, State, Via};
use crate::error::Result;
use rusqlite::{Connection, params};

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
        for_each_component(conn, scope, polls, now, |row| {
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

/// Which part of the fleet a convergence view covers.
#[derive(Clone, Debug, Default)]
pub struct Scope {
    /// Only this cluster (by id).
    pub cluster: Option<String>,
    /// Only the cluster with this DNS name (a cluster-scoped token's view).
    pub cluster_dns: Option<String>,
    /// Only these clusters (by id): one page of the console's fleet, in one walk.
    pub clusters: Option<Vec<String>>,
    /// Only this component.
    pub component: Option<String>,
    /// Read no report: every row as if nothing was reported yet (its state decided by what
    /// is desired alone), for views that ask only where a component is desired.
    pub desired_only: bool,
}

/// One component on one cluster: desired, reported, and the state that follows. Borrowed
/// from the row being read, so a fleet-wide view allocates nothing per row.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ComponentRow<'a> {
    pub cluster_id: &'a str,
    pub cluster_dns: &'a str,
    pub environment: &'a str,
    pub component: &'a str,
    pub enabled: bool,
    /// The feed's `source.oci_tag`.
    pub desired: &'a str,
    pub state: State,
    /// The state were the cluster not stale (`state` is `Stale` for an enabled component of
    /// a stale cluster).
    pub unless_stale: State,
    /// Some report speaks for the component here: only then can a new desired tag change
    /// its state.
    pub claimed: bool,
    /// The chart version of the latest decisive event.
    pub reported_revision: Option<&'a str>,
    pub reason: Option<&'a str>,
    pub message: Option<&'a str>,
    /// When the event that decided the state happened (Unix seconds).
    pub event_at: Option<i64>,
    /// How that event was authenticated.
    pub via: Option<Via>,
}

/// An owned [`ComponentRow`].
#[derive(Clone, Debug, PartialEq)]
pub struct ComponentState {
    pub cluster_id: String,
    pub cluster_dns: String,
    pub environment: String,
    pub component: String,
    pub enabled: bool,
    pub desired: String,
    pub state: State,
    pub reported_revision: Option<String>,
    pub reason: Option<String>,
    pub message: Option<String>,
    pub event_at: Option<i64>,
    pub via: Option<Via>,
}

impl From<&ComponentRow<'_>> for ComponentState {
    fn from(row: &ComponentRow<'_>) -> Self {
        ComponentState {
            cluster_id: row.cluster_id.to_owned(),
            cluster_dns: row.cluster_dns.to_owned(),
            environment: row.environment.to_owned(),
            component: row.component.to_owned(),
            enabled: row.enabled,
            desired: row.desired.to_owned(),
            state: row.state,
            reported_revision: row.reported_revision.map(str::to_owned),
            reason: row.reason.map(str::to_owned),
            message: row.message.map(str::to_owned),
            event_at: row.event_at,
            via: row.via,
        }
    }
}

/// The latest report of an object that may speak for a component (a HelmRelease or a
/// source), as convergence needs it.
struct HelmReport {
    claimant: report::Claimant,
    component: Option<String>,
    name: String,
    event_at: i64,
    outcome: Option<Outcome>,
    revision: Option<String>,
    desired_then: Option<String>,
    outcome_at: Option<i64>,
    reason: Option<String>,
    /// Loaded only for views of one cluster or one component.
    message: Option<String>,
    via: Option<Via>,
}

/// The reports that speak for `component`: objects whose event metadata names it, or that
/// are named as it (without metadata naming another component).
fn claims<'a>(
    list: &'a [HelmReport],
    component: &str,
) -> impl Iterator<Item = &'a HelmReport> + Clone {
    list.iter().filter(move |r| match &r.component {
        Some(named) => named == component,
        None => r.name == component,
    })
}

/// `AND …` conditions on `column` for the scope's cluster (by id or DNS name), if any.
fn cluster_condition(scope: &Scope, id_column: &str, by_dns: &str) -> String {
    let mut sql = String::new();
    if scope.cluster.is_some() {
        sql.push_str(&format!(" AND {id_column} = ?1"));
    }
    if scope.clusters.is_some() {
        sql.push_str(&format!(
            " AND {id_column} IN (SELECT value FROM json_each(?4))"
        ));
    }
    if scope.cluster_dns.is_some() {
        sql.push_str(&format!(" AND {by_dns}"));
    }
    sql
}

/// Takes the rows of cluster `id` from a stream in cluster id order (`pending` is the row
/// read ahead, `next` reads the following one), passing each to `keep` and skipping rows of
/// clusters before `id` (clusters the walk passed over).
fn rows_of<T>(
    id: &str,
    pending: &mut Option<(String, T)>,
    next: &mut impl FnMut() -> Result<Option<(String, T)>>,
    mut keep: impl FnMut(T),
) -> Result<()> {
    while let Some((cluster_id, row)) = pending.take() {
        if cluster_id.as_str() > id {
            *pending = Some((cluster_id, row));
            break;
        }
        if cluster_id == id {
            keep(row);
        }
        *pending = next()?;
    }
    Ok(())
}

/// Visits every (cluster, component) in `scope` in cluster id order (a single cluster's in
/// feed order); `polls` decides which clusters are stale at `now`.
///
/// One pass at fleet size with memory per cluster, not per fleet: the clusters, their
/// assignments and their reports are read by three statements, each in cluster id order, and
/// merged (the reports through the reports' primary key, cluster by cluster); each cluster's
/// values are layered with the overlays that match it (README, "Overlays").
pub fn for_each_component(
    conn: &Connection,
    scope: &Scope,
    polls: &PollTracker,
    now: u64,
    mut visit: impl FnMut(&ComponentRow<'_>),
) -> Result<()> {
    let ids = scope
        .clusters
        .as_ref()
        .map(|ids| serde_json::Value::from(ids.clone()).to_string());
    let bind = params![scope.cluster, scope.cluster_dns, scope.component, ids];
    // ?1 cluster id, ?2 cluster DNS name, ?3 component, ?4 cluster ids: every statement
    // names all four (`?n IS ?n` keeps an unused one bound), so one parameter list serves.
    let unused = " AND ?1 IS ?1 AND ?2 IS ?2 AND ?3 IS ?3 AND ?4 IS ?4";
    let single = scope.cluster.is_some() || scope.cluster_dns.is_some();
    let catalog: HashMap<String, String> = conn
        .prepare_cached("SELECT id, oci_tag FROM platform_components")
        .db()?
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
        .db()?
        .collect::<rusqlite::Result<_>>()
        .db()?;

    let mut clusters_stmt = conn
        .prepare_cached(&format!(
            "SELECT id, cluster_dns, environment FROM clusters WHERE 1{}{unused} ORDER BY id",
            cluster_condition(scope, "id", "cluster_dns = ?2")
        ))
        .db()?;
    let mut clusters = clusters_stmt.query(bind).db()?;
    let mut assignments_stmt = conn
        .prepare_cached(&format!(
            "SELECT cluster_id, component_id, enabled, oci_tag FROM cluster_components WHERE 1{}{}{unused}{}",
            cluster_condition(
                scope,
                "cluster_id",
                "cluster_id = (SELECT id FROM clusters WHERE cluster_dns = ?2)"
            ),
            if scope.component.is_some() { " AND component_id = ?3" } else { "" },
            // Primary-key (and component index) order is cluster id order; one cluster is
            // shown in feed order.
            if single { " ORDER BY position" } else { " ORDER BY cluster_id" }
        ))
        .db()?;
    let mut assignments = assignments_stmt.query(bind).db()?;
    // Messages are up to 2 KiB: read for views of one cluster or one component only.
    let with_messages = single || scope.component.is_some();
    // The reports of every cluster in scope, in cluster id order too: one statement for the
    // whole walk rather than one per cluster. CROSS JOIN keeps clusters the outer loop (SQLite
    // 3.53 would otherwise scan every report and sort).
    let message = if with_messages {
        "r.outcome_message"
    } else {
        "NULL"
    };
    let any = if scope.desired_only { "0" } else { "1" };
    let clusters_in_scope = cluster_condition(scope, "c.id", "c.cluster_dns = ?2");
    let component_named = if scope.component.is_some() {
        " AND (r.component = ?3 OR (r.component IS NULL AND r.name = ?3))"
    } else {
        ""
    };
    let mut reports_stmt = conn
        .prepare_cached(&format!(
            "SELECT c.id, r.component, r.name, r.event_at, r.outcome, r.outcome_revision, \
             r.desired_then, r.outcome_at, r.outcome_reason, {message}, r.outcome_via, r.kind \
             FROM clusters c CROSS JOIN reported_objects r ON r.cluster_dns = c.cluster_dns \
             AND r.kind IN ('HelmRelease', 'OCIRepository', 'HelmRepository', 'HelmChart') \
             WHERE {any}{clusters_in_scope}{component_named}{unused} ORDER BY c.id"
        ))
        .db()?;
    let mut report_rows = reports_stmt.query(bind).db()?;
    let mut next_report = || -> Result<Option<(String, Option<HelmReport>)>> {
        let Some(r) = report_rows.next().db()? else {
            return Ok(None);
        };
        let outcome: Option<String> = r.get(4).db()?;
        let via: Option<String> = r.get(10).db()?;
        let kind: String = r.get(11).db()?;
        let report = match report::Claimant::of_kind(&kind) {
            None => None,
            Some(claimant) => Some(HelmReport {
                claimant,
                component: r.get(1).db()?,
                name: r.get(2).db()?,
                event_at: r.get(3).db()?,
                outcome: outcome.as_deref().and_then(Outcome::parse),
                revision: r.get(5).db()?,
                desired_then: r.get(6).db()?,
                outcome_at: r.get(7).db()?,
                reason: r.get(8).db()?,
                message: r.get(9).db()?,
                via: via.as_deref().and_then(Via::parse),
            }),
        };
        Ok(Some((r.get(0).db()?, report)))
    };
    let mut pending_report = next_report()?;

    let overlays = super::overlays::all(conn)?;
    let mut next_assignment = || -> Result<Option<(String, ComponentRef)>> {
        let Some(row) = assignments.next().db()? else {
            return Ok(None);
        };
        Ok(Some((
            row.get(0).db()?,
            ComponentRef {
                id: row.get(1).db()?,
                enabled: row.get(2).db()?,
                oci_tag: row.get(3).db()?,
                component_path: None,
            },
        )))
    };
    let mut pending = next_assignment()?;
    let mut reports: Vec<HelmReport> = Vec::new();
    // Clusters and assignments are both in cluster id order: merged as they are read.
    while let Some(cluster) = clusters.next().db()? {
        let id: String = cluster.get(0).db()?;
        let mut own = Vec::new();
        rows_of(&id, &mut pending, &mut next_assignment, |a| own.push(a))?;
        if own.is_empty() && overlays.is_empty() {
            continue;
        }
        let environment: String = cluster.get(2).db()?;
        // (component, enabled, its own or an overlay's oci_tag): the feed's values.
        let assigned: Vec<(String, bool, Option<String>)> = if overlays.is_empty() {
            own.into_iter()
                .map(|c| (c.id, c.enabled, c.oci_tag))
                .collect()
        } else {
            let labels = clusters::labels_of(conn, &id)?;
            let env = crate::domain::model::Environment::parse(&environment)
                .unwrap_or(crate::domain::model::Environment::Dev);
            let matched = overlay::matching(&overlays, env, &labels);
            let mut ids: Vec<&str> = own.iter().map(|c| c.id.as_str()).collect();
            for o in &matched {
                for entry in &o.platform_components {
                    let in_scope = scope.component.as_ref().is_none_or(|c| *c == entry.id);
                    if entry.enabled.is_some() && in_scope && !ids.contains(&entry.id.as_str()) {
                        ids.push(&entry.id);
                    }
                }
            }
            ids.iter()
                .filter_map(|component| {
                    let mine = own.iter().find(|c| c.id == *component);
                    overlay::component_values(component, mine, &matched)
                })
                .map(|c| (c.id, c.enabled.0, c.oci_tag.0))
                .collect()
        };
        if assigned.is_empty() {
            continue;
        }
        let dns: String = cluster.get(1).db()?;
        let stale = polls.is_stale_of(&dns, now);
        reports.clear();
        rows_of(&id, &mut pending_report, &mut next_report, |r| {
            reports.extend(r)
        })?;
        for (component, enabled, tag) in &assigned {
            let component = component.as_str();
            let Some(desired) = tag
                .as_deref()
                .or_else(|| catalog.get(component).map(String::as_str))
            else {
                continue;
            };
            let claimed = claims(&reports, component).map(|r| report::Claim {
                claimant: r.claimant,
                reported: match r.outcome {
                    None => Reported::Undecided,
                    Some(outcome) => Reported::Settled(Settled {
                        outcome,
                        revision: r.revision.as_deref(),
                        desired_then: r.desired_then.as_deref(),
                    }),
                },
                settled_at: r.outcome_at,
                event_at: r.event_at,
            });
            let (state, deciding) = report::combine(*enabled, desired, claimed);
            let decided = deciding
                .and_then(|i| claims(&reports, component).nth(i))
                .filter(|r| r.outcome.is_some());
            visit(&ComponentRow {
                cluster_id: &id,
                cluster_dns: &dns,
                environment: &environment,
                component,
                enabled: *enabled,
                desired,
                state: if stale && *enabled {
                    State::Stale
                } else {
                    state
                },
                unless_stale: state,
                claimed: claims(&reports, component).next().is_some(),
                reported_revision: decided.and_then(|r| r.revision.as_deref()),
                reason: decided.and_then(|r| r.reason.as_deref()),
                message: decided.and_then(|r| r.message.as_deref()),
                event_at: decided.and_then(|r| r.outcome_at),
                via: decided.and_then(|r| r.via),
            });
        }
    }
    Ok(())
}
