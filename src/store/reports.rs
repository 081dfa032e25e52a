//! Reports from the clusters' Flux (notification-controller events) and the convergence view
//! built from them (README, "Flux reports back").
//!
//! Receiving an event queues it in an in-memory inbox and waits: a committer drains the inbox
//! in one transaction (group commit: every event that arrived while the previous batch was
//! being written shares the next transaction and its fsync) and answers each waiting request
//! after its batch committed. So an event answered `202` survives a crash, and the inbox holds
//! only events whose requests are still waiting: bounded by count and bytes, beyond which a
//! request is refused with `503` at once.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::oneshot;

use super::polls::PollTracker;
use super::sql::SqlResultExt;
use crate::domain::report::{self, Outcome, Reported, Settled, Severity, State, Via};
use crate::error::{AppError, Result};

/// Events kept per cluster (the newest).
pub const EVENTS_PER_CLUSTER: i64 = 100;
/// Objects kept per cluster: a cluster reports its HelmReleases, Kustomizations and
/// ResourceSets, a few dozen; this bounds a misbehaving one.
pub const OBJECTS_PER_CLUSTER: i64 = 1000;
/// Bytes of an event message kept (notification-controller sends up to 39,000).
pub const MESSAGE_BYTES: usize = 2048;
/// Events waiting for their commit beyond which a new one is refused (`503`, retry).
pub const INBOX_MAX_EVENTS: usize = 10_000;
/// Bytes of events waiting for their commit beyond which a new one is refused.
pub const INBOX_MAX_BYTES: usize = 8 * 1024 * 1024;

/// One received event, reduced to what is kept, for the cluster it came from.
#[derive(Clone, Debug)]
pub struct Report {
    pub cluster_dns: String,
    pub event: StoredEvent,
    /// Identifies the event, so a redelivery is recognised.
    pub digest: [u8; 16],
}

impl Report {
    /// What the report holds in memory while it waits, roughly: its strings and a fixed part.
    fn footprint(&self) -> usize {
        let e = &self.event;
        std::mem::size_of::<Report>()
            + self.cluster_dns.len()
            + e.kind.len()
            + e.namespace.len()
            + e.name.len()
            + e.reason.len()
            + e.message.len()
            + e.revision.as_ref().map_or(0, String::len)
            + e.component.as_ref().map_or(0, String::len)
    }
}

/// The object kinds counted by name in metrics; anything else counts as `other`.
const KINDS: [&str; 4] = [
    "HelmRelease",
    "Kustomization",
    "ResourceSet",
    "ResourceSetInputProvider",
];

/// Reasons Flux controllers emit, counted by name in metrics (bounded cardinality: a cluster
/// cannot create series by inventing reasons); anything else counts as `other`.
const REASONS: [&str; 24] = [
    "InstallSucceeded",
    "InstallFailed",
    "UpgradeSucceeded",
    "UpgradeFailed",
    "TestSucceeded",
    "TestFailed",
    "RollbackSucceeded",
    "RollbackFailed",
    "UninstallSucceeded",
    "UninstallFailed",
    "DriftCorrected",
    "DependencyNotReady",
    "PendingRelease",
    "ArtifactFailed",
    "ReconciliationSucceeded",
    "ReconciliationFailed",
    "Progressing",
    "HealthCheckFailed",
    "BuildFailed",
    "PruneFailed",
    "ValidationFailed",
    "InitFailed",
    "RetriesExceeded",
    "MissingRollbackTarget",
];

fn known(list: &'static [&'static str], value: &str) -> &'static str {
    list.iter()
        .find(|k| **k == value)
        .copied()
        .unwrap_or("other")
}

/// Received events by (kind, reason, severity), names from the bounded lists above.
pub type EventCounts = Vec<((&'static str, &'static str, &'static str), u64)>;

/// A report waiting for its commit, and the request waiting for the outcome.
pub struct Queued {
    pub report: Report,
    answer: oneshot::Sender<Result<()>>,
}

impl Queued {
    /// Tells the waiting request how its batch ended.
    pub fn answer(self, outcome: Result<()>) {
        let _ = self.answer.send(outcome);
    }
}

#[derive(Default)]
struct Waiting {
    queue: Vec<Queued>,
    bytes: usize,
    /// A committer is draining the queue; a new report need not start one.
    committing: bool,
}

#[derive(Default)]
struct Inbox {
    waiting: Mutex<Waiting>,
    counts: Mutex<HashMap<(&'static str, &'static str, Severity), u64>>,
    accepted: AtomicU64,
}

/// Shared by every request; cheap to clone.
#[derive(Clone, Default)]
pub struct ReportInbox(Arc<Inbox>);

/// A queued report: the outcome of its commit, and whether the caller must start a committer.
pub struct Ticket {
    pub outcome: oneshot::Receiver<Result<()>>,
    pub start_committer: bool,
}

impl ReportInbox {
    /// Queues a report for the next group commit. Refused (`503`) when the reports already
    /// waiting pass the inbox's bounds, whatever the state of the committer.
    pub fn push(&self, report: Report) -> Result<Ticket> {
        let footprint = report.footprint();
        let (answer, outcome) = oneshot::channel();
        let mut waiting = self.lock();
        if waiting.queue.len() >= INBOX_MAX_EVENTS || waiting.bytes + footprint > INBOX_MAX_BYTES {
            return Err(AppError::Unavailable(format!(
                "{} events ({} KiB) are waiting to be saved; retry shortly",
                waiting.queue.len(),
                waiting.bytes / 1024
            )));
        }
        waiting.bytes += footprint;
        waiting.queue.push(Queued { report, answer });
        let start_committer = !std::mem::replace(&mut waiting.committing, true);
        Ok(Ticket {
            outcome,
            start_committer,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Waiting> {
        self.0.waiting.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Everything waiting, in arrival order.
    pub fn take(&self) -> Vec<Queued> {
        let mut waiting = self.lock();
        waiting.bytes = 0;
        std::mem::take(&mut waiting.queue)
    }

    /// Whether the committer has more to do; when not, it ends (and the next report starts
    /// a new one): decided under the lock, so no report is left without a committer.
    pub fn keep_committing(&self) -> bool {
        let mut waiting = self.lock();
        waiting.committing = !waiting.queue.is_empty();
        waiting.committing
    }

    /// Events waiting for their commit.
    pub fn waiting(&self) -> usize {
        self.lock().queue.len()
    }

    /// Counts a committed batch in the metrics.
    pub fn count(&self, batch: &[Queued]) {
        let mut counts = self.0.counts.lock().unwrap_or_else(|e| e.into_inner());
        for queued in batch {
            let event = &queued.report.event;
            let key = (
                known(&KINDS, &event.kind),
                known(&REASONS, &event.reason),
                event.severity,
            );
            *counts.entry(key).or_default() += 1;
        }
        self.0
            .accepted
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
    }

    /// Events committed since start.
    pub fn accepted(&self) -> u64 {
        self.0.accepted.load(Ordering::Relaxed)
    }

    pub fn counts(&self) -> EventCounts {
        let counts = self.0.counts.lock().unwrap_or_else(|e| e.into_inner());
        let mut list: EventCounts = counts
            .iter()
            .map(|(&(kind, reason, severity), &n)| ((kind, reason, severity.as_str()), n))
            .collect();
        list.sort_unstable();
        list
    }
}

/// The digest identifying an event: every field the cluster sent that is kept, plus the
/// full message (two events differing only past the kept prefix are still two events).
pub fn digest(parts: &[&str]) -> [u8; 16] {
    let mut context = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    for part in parts {
        context.update(&(part.len() as u64).to_le_bytes());
        context.update(part.as_bytes());
    }
    let mut out = [0u8; 16];
    out.copy_from_slice(&context.finish().as_ref()[..16]);
    out
}

/// Applies a batch in arrival order, inside the caller's transaction. Redelivered events are
/// skipped, and so are events of a cluster deleted since they arrived; an event older than
/// what is stored for its object updates only the event list.
pub fn apply<'a>(tx: &Connection, batch: impl IntoIterator<Item = &'a Report>) -> Result<usize> {
    let mut record = tx
        .prepare_cached(
            "INSERT INTO reported_events (cluster_dns, digest, received_at, via, event_at, kind, namespace, \
             name, severity, reason, message, revision, component) \
             SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13 \
             WHERE EXISTS (SELECT 1 FROM clusters WHERE cluster_dns = ?1) \
             ON CONFLICT (cluster_dns, digest) DO NOTHING",
        )
        .db()?;
    let mut latest = tx
        .prepare_cached(
            "INSERT INTO reported_objects (cluster_dns, kind, namespace, name, component, event_at, \
             received_at, severity, reason, message, revision, via) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12) \
             ON CONFLICT (cluster_dns, kind, namespace, name) DO UPDATE SET \
             component = coalesce(excluded.component, component), event_at = excluded.event_at, \
             received_at = excluded.received_at, severity = excluded.severity, reason = excluded.reason, \
             message = excluded.message, revision = excluded.revision, via = excluded.via \
             WHERE excluded.event_at >= reported_objects.event_at",
        )
        .db()?;
    // The desired tag is read in the same transaction: the inventory of this moment.
    let mut settle = tx
        .prepare_cached(
            "UPDATE reported_objects SET outcome = ?5, outcome_at = ?6, outcome_reason = ?7, \
             outcome_message = ?8, outcome_revision = ?9, outcome_via = ?10, desired_then = \
             (SELECT coalesce(cc.oci_tag, pc.oci_tag) FROM clusters c \
              JOIN cluster_components cc ON cc.cluster_id = c.id \
              JOIN platform_components pc ON pc.id = cc.component_id \
              WHERE c.cluster_dns = ?1 \
              AND cc.component_id = coalesce(reported_objects.component, reported_objects.name)) \
             WHERE cluster_dns = ?1 AND kind = ?2 AND namespace = ?3 AND name = ?4 \
             AND (outcome_at IS NULL OR outcome_at <= ?6)",
        )
        .db()?;
    let mut applied = 0;
    let mut touched: Vec<&str> = Vec::new();
    for r in batch {
        let inserted = record
            .execute(params![
                r.cluster_dns,
                &r.digest[..],
                r.event.received_at,
                r.event.via.as_str(),
                r.event.event_at,
                r.event.kind,
                r.event.namespace,
                r.event.name,
                r.event.severity.as_str(),
                r.event.reason,
                r.event.message,
                r.event.revision,
                r.event.component
            ])
            .db()?;
        if inserted == 0 {
            continue;
        }
        applied += 1;
        latest
            .execute(params![
                r.cluster_dns,
                r.event.kind,
                r.event.namespace,
                r.event.name,
                r.event.component,
                r.event.event_at,
                r.event.received_at,
                r.event.severity.as_str(),
                r.event.reason,
                r.event.message,
                r.event.revision,
                r.event.via.as_str()
            ])
            .db()?;
        if let Some(claimant) = report::Claimant::of_kind(&r.event.kind)
            && let Some(outcome) = report::decisive(claimant, r.event.severity, &r.event.reason)
        {
            settle
                .execute(params![
                    r.cluster_dns,
                    r.event.kind,
                    r.event.namespace,
                    r.event.name,
                    outcome.as_str(),
                    r.event.event_at,
                    r.event.reason,
                    r.event.message,
                    r.event.revision,
                    r.event.via.as_str()
                ])
                .db()?;
        }
        if !touched.contains(&r.cluster_dns.as_str()) {
            touched.push(&r.cluster_dns);
        }
    }
    for dns in touched {
        trim(tx, dns)?;
    }
    Ok(applied)
}

/// Keeps a cluster's newest events and objects, dropping the rest. The objects that speak for
/// a component the cluster is assigned (its HelmReleases and sources) are never dropped: what
/// decides a component's state must not be what a flood of other objects pushes out.
fn trim(tx: &Connection, cluster_dns: &str) -> Result<()> {
    tx.prepare_cached(
        "DELETE FROM reported_events WHERE cluster_dns = ?1 AND id < \
         (SELECT id FROM reported_events WHERE cluster_dns = ?1 ORDER BY id DESC LIMIT 1 OFFSET ?2)",
    )
    .db()?
    .execute(params![cluster_dns, EVENTS_PER_CLUSTER - 1])
    .db()?;
    let objects: i64 = tx
        .prepare_cached("SELECT count(*) FROM reported_objects WHERE cluster_dns = ?1")
        .db()?
        .query_row([cluster_dns], |row| row.get(0))
        .db()?;
    if objects > OBJECTS_PER_CLUSTER {
        tx.prepare_cached(
            "DELETE FROM reported_objects WHERE rowid IN (SELECT rowid FROM reported_objects r \
             WHERE cluster_dns = ?1 AND NOT (kind IN ('HelmRelease', 'OCIRepository', 'HelmRepository', 'HelmChart') \
               AND coalesce(component, name) IN (SELECT cc.component_id FROM cluster_components cc \
                 JOIN clusters c ON c.id = cc.cluster_id WHERE c.cluster_dns = ?1)) \
             ORDER BY received_at, event_at LIMIT ?2)",
        )
        .db()?
        .execute(params![cluster_dns, objects - OBJECTS_PER_CLUSTER])
        .db()?;
    }
    Ok(())
}

/// Which part of the fleet a convergence view covers.
#[derive(Clone, Debug, Default)]
pub struct Scope {
    /// Only this cluster (by id).
    pub cluster: Option<String>,
    /// Only the cluster with this DNS name (a cluster-scoped token's view).
    pub cluster_dns: Option<String>,
    /// Only this component.
    pub component: Option<String>,
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
fn cluster_condition(scope: &Scope, by_id: &str, by_dns: &str) -> String {
    let mut sql = String::new();
    if scope.cluster.is_some() {
        sql.push_str(&format!(" AND {by_id}"));
    }
    if scope.cluster_dns.is_some() {
        sql.push_str(&format!(" AND {by_dns}"));
    }
    sql
}

/// Visits every (cluster, component) in `scope` in cluster id order (a single cluster's in
/// feed order); `polls` decides which clusters are stale at `now`.
///
/// One pass at fleet size with memory per cluster, not per fleet: the assignments and the
/// clusters are both read in cluster id order and merged, and each cluster's HelmRelease
/// reports are read through the reports' primary key when the pass reaches it.
pub fn for_each_component(
    conn: &Connection,
    scope: &Scope,
    polls: &PollTracker,
    now: u64,
    mut visit: impl FnMut(&ComponentRow<'_>),
) -> Result<()> {
    let bind = params![scope.cluster, scope.cluster_dns, scope.component];
    // ?1 cluster id, ?2 cluster DNS name, ?3 component: every statement names all three
    // (`?n IS ?n` keeps an unused one bound), so one parameter list serves them all.
    let unused = " AND ?1 IS ?1 AND ?2 IS ?2 AND ?3 IS ?3";
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
            cluster_condition(scope, "id = ?1", "cluster_dns = ?2")
        ))
        .db()?;
    let mut clusters = clusters_stmt.query(bind).db()?;
    let mut assignments_stmt = conn
        .prepare_cached(&format!(
            "SELECT cluster_id, component_id, enabled, oci_tag FROM cluster_components WHERE 1{}{}{unused}{}",
            cluster_condition(
                scope,
                "cluster_id = ?1",
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
    let mut reports_stmt = conn
        .prepare_cached(&format!(
            "SELECT component, name, event_at, outcome, outcome_revision, desired_then, outcome_at, \
             outcome_reason, {}, outcome_via, kind FROM reported_objects \
             WHERE cluster_dns = ?1 AND kind IN ('HelmRelease', 'OCIRepository', 'HelmRepository', 'HelmChart'){}",
            if with_messages { "outcome_message" } else { "NULL" },
            if scope.component.is_some() {
                " AND (component = ?2 OR (component IS NULL AND name = ?2))"
            } else {
                " AND ?2 IS ?2"
            }
        ))
        .db()?;

    // The cluster the pass is at: id, DNS name, environment, staleness, its reports.
    let (mut id, mut dns, mut environment) = (String::new(), String::new(), String::new());
    let mut stale = false;
    let mut reports: Vec<HelmReport> = Vec::new();
    while let Some(row) = assignments.next().db()? {
        let text = |i: usize| -> Result<&str> {
            row.get_ref(i)
                .db()?
                .as_str()
                .map_err(|err| crate::store::storage_error(err.into()))
        };
        let cluster_id = text(0)?;
        if cluster_id != id {
            // Advance the clusters to this one (both are in id order).
            let mut found = false;
            while let Some(cluster) = clusters.next().db()? {
                let next = cluster
                    .get_ref(0)
                    .db()?
                    .as_str()
                    .map_err(|err| crate::store::storage_error(err.into()))?;
                if next == cluster_id {
                    id.clear();
                    id.push_str(next);
                    dns = cluster.get(1).db()?;
                    environment = cluster.get(2).db()?;
                    found = true;
                    break;
                }
                if next > cluster_id {
                    break;
                }
            }
            if !found {
                // Not in scope (the scopes of both statements agree, so this is a race
                // with nothing: kept as a guard).
                continue;
            }
            stale = polls.is_stale(&polls.get(&dns), now);
            reports.clear();
            let mut rows = reports_stmt.query(params![dns, scope.component]).db()?;
            while let Some(r) = rows.next().db()? {
                let outcome: Option<String> = r.get(3).db()?;
                let via: Option<String> = r.get(9).db()?;
                let kind: String = r.get(10).db()?;
                let Some(claimant) = report::Claimant::of_kind(&kind) else {
                    continue;
                };
                reports.push(HelmReport {
                    claimant,
                    component: r.get(0).db()?,
                    name: r.get(1).db()?,
                    event_at: r.get(2).db()?,
                    outcome: outcome.as_deref().and_then(Outcome::parse),
                    revision: r.get(4).db()?,
                    desired_then: r.get(5).db()?,
                    outcome_at: r.get(6).db()?,
                    reason: r.get(7).db()?,
                    message: r.get(8).db()?,
                    via: via.as_deref().and_then(Via::parse),
                });
            }
        }
        let component = text(1)?;
        let enabled: bool = row.get(2).db()?;
        let own_tag = row
            .get_ref(3)
            .db()?
            .as_str_or_null()
            .map_err(|err| crate::store::storage_error(err.into()))?;
        let Some(desired) = own_tag.or_else(|| catalog.get(component).map(String::as_str)) else {
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
        let (state, deciding) = report::combine(enabled, desired, claimed);
        let decided = deciding
            .and_then(|i| claims(&reports, component).nth(i))
            .filter(|r| r.outcome.is_some());
        visit(&ComponentRow {
            cluster_id,
            cluster_dns: &dns,
            environment: &environment,
            component,
            enabled,
            desired,
            state: if stale && enabled {
                State::Stale
            } else {
                state
            },
            reported_revision: decided.and_then(|r| r.revision.as_deref()),
            reason: decided.and_then(|r| r.reason.as_deref()),
            message: decided.and_then(|r| r.message.as_deref()),
            event_at: decided.and_then(|r| r.outcome_at),
            via: decided.and_then(|r| r.via),
        });
    }
    Ok(())
}

/// One event as kept and listed.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredEvent {
    /// The event's own time (Unix seconds, capped near the server's clock).
    pub event_at: i64,
    pub received_at: i64,
    /// How it was authenticated.
    pub via: Via,
    pub kind: String,
    pub namespace: String,
    pub name: String,
    pub severity: Severity,
    pub reason: String,
    /// At most `MESSAGE_BYTES`.
    pub message: String,
    /// Metadata `revision`: the chart version for a HelmRelease.
    pub revision: Option<String>,
    /// Metadata `component`: the catalog id, when the template sets the annotation.
    pub component: Option<String>,
}

/// The cluster's last events, newest first.
pub fn events(conn: &Connection, cluster_dns: &str, limit: i64) -> Result<Vec<StoredEvent>> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT event_at, received_at, via, kind, namespace, name, severity, reason, message, \
             revision, component FROM reported_events WHERE cluster_dns = ?1 \
             ORDER BY event_at DESC, id DESC LIMIT ?2",
        )
        .db()?;
    stmt.query_map(params![cluster_dns, limit], |row| {
        let via: String = row.get(2)?;
        let severity: String = row.get(6)?;
        Ok(StoredEvent {
            event_at: row.get(0)?,
            received_at: row.get(1)?,
            via: Via::parse(&via).unwrap_or(Via::Fleet),
            kind: row.get(3)?,
            namespace: row.get(4)?,
            name: row.get(5)?,
            severity: Severity::parse(&severity).unwrap_or(Severity::Info),
            reason: row.get(7)?,
            message: row.get(8)?,
            revision: row.get(9)?,
            component: row.get(10)?,
        })
    })
    .db()?
    .collect::<rusqlite::Result<Vec<_>>>()
    .db()
}

/// Whether the catalog has this component.
pub fn component_exists(conn: &Connection, id: &str) -> Result<bool> {
    conn.prepare_cached("SELECT 1 FROM platform_components WHERE id = ?1")
        .db()?
        .query_row([id], |_| Ok(()))
        .optional()
        .db()
        .map(|found| found.is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn database() -> Connection {
        let mut conn = Connection::open_in_memory().unwrap();
        crate::store::migrate::migrate(&mut conn, |_| Ok(())).unwrap();
        conn.execute_batch(
            "INSERT INTO clusters (id, cluster_name, cluster_dns, environment) VALUES ('a', 'a', 'a.example.com', 'dev');
             INSERT INTO platform_components (id, component_path, component_version, oci_url, oci_tag)
                 VALUES ('cert-manager', 'p', '1', 'oci://x', 'v1.16.0');
             INSERT INTO cluster_components (cluster_id, component_id, position, enabled) VALUES ('a', 'cert-manager', 0, 1);",
        )
        .unwrap();
        conn
    }

    fn report(at: i64, severity: Severity, reason: &str, revision: &str) -> Report {
        Report {
            cluster_dns: "a.example.com".into(),
            event: StoredEvent {
                via: Via::Cluster,
                received_at: at,
                event_at: at,
                kind: "HelmRelease".into(),
                namespace: "flux-system".into(),
                name: "cert-manager".into(),
                severity,
                reason: reason.into(),
                message: format!("{reason} {revision}"),
                revision: Some(revision.into()),
                component: None,
            },
            digest: digest(&[&at.to_string(), reason, revision]),
        }
    }

    fn state_of(conn: &Connection) -> State {
        let polls = PollTracker::default();
        polls.record(
            "a.example.com",
            crate::store::feeds::Feed::PlatformComponents,
            "t",
            100,
        );
        let mut states = Vec::new();
        for_each_component(conn, &Scope::default(), &polls, 100, |row| {
            states.push(row.state)
        })
        .unwrap();
        states[0]
    }

    #[test]
    fn older_and_redelivered_events_do_not_overwrite() {
        let conn = database();
        assert_eq!(state_of(&conn), State::Unknown);
        let failed = report(20, Severity::Error, "UpgradeFailed", "v1.16.0");
        let succeeded = report(30, Severity::Info, "UpgradeSucceeded", "v1.16.0");
        assert_eq!(apply(&conn, std::slice::from_ref(&succeeded)).unwrap(), 1);
        assert_eq!(state_of(&conn), State::Converged);
        // The failure happened before the success; it arrives late and changes nothing.
        assert_eq!(apply(&conn, &[failed]).unwrap(), 1);
        assert_eq!(state_of(&conn), State::Converged);
        assert_eq!(apply(&conn, &[succeeded]).unwrap(), 0, "a redelivery");
        let events = events(&conn, "a.example.com", 100).unwrap();
        assert_eq!(events.len(), 2);
        assert_eq!(events[0].reason, "UpgradeSucceeded", "newest first");
    }

    #[test]
    fn keeps_the_last_hundred_events() {
        let conn = database();
        let batch: Vec<Report> = (0..150)
            .map(|i| report(i, Severity::Info, "DependencyNotReady", "v1.16.0"))
            .collect();
        assert_eq!(apply(&conn, &batch).unwrap(), 150);
        let kept = events(&conn, "a.example.com", 1000).unwrap();
        assert_eq!(kept.len(), EVENTS_PER_CLUSTER as usize);
        assert_eq!(kept[0].event_at, 149);
        assert_eq!(state_of(&conn), State::Progressing, "only undecided events");
    }

    #[test]
    fn counts_committed_events_by_bounded_names() {
        let inbox = ReportInbox::default();
        let mut odd = report(1, Severity::Info, "SomethingNew", "v1");
        odd.event.kind = "GitRepository".into();
        assert!(inbox.push(odd).unwrap().start_committer);
        assert!(
            !inbox
                .push(report(2, Severity::Error, "UpgradeFailed", "v1"))
                .unwrap()
                .start_committer,
            "one committer at a time"
        );
        assert!(
            inbox.counts().is_empty(),
            "nothing counted before its commit"
        );
        let batch = inbox.take();
        inbox.count(&batch);
        assert_eq!(
            inbox.counts(),
            vec![
                (("HelmRelease", "UpgradeFailed", "error"), 1),
                (("other", "other", "info"), 1)
            ]
        );
        assert_eq!(inbox.accepted(), 2);
        assert!(
            !inbox.keep_committing(),
            "the committer ends on an empty inbox"
        );
        assert!(
            inbox
                .push(report(3, Severity::Info, "x", "v1"))
                .unwrap()
                .start_committer
        );
    }

    #[test]
    fn the_inbox_refuses_beyond_its_bounds_and_takes_again_once_drained() {
        let inbox = ReportInbox::default();
        let mut tickets = Vec::new();
        for at in 0..INBOX_MAX_EVENTS as i64 {
            tickets.push(inbox.push(report(at, Severity::Info, "x", "v1")).unwrap());
        }
        let refused = inbox.push(report(-1, Severity::Info, "x", "v1"));
        assert!(matches!(refused, Err(AppError::Unavailable(_))));
        drop(inbox.take());
        let mut big = report(0, Severity::Info, "x", "v1");
        big.event.message = "m".repeat(MESSAGE_BYTES);
        let mut taken = 0;
        while inbox.push(big.clone()).is_ok() {
            taken += 1;
        }
        assert!(
            taken < INBOX_MAX_BYTES / MESSAGE_BYTES,
            "bounded by bytes: {taken}"
        );
        assert!(taken > INBOX_MAX_BYTES / (4 * MESSAGE_BYTES), "{taken}");
    }
}
