//! Reports from the clusters' Flux (notification-controller events) and the convergence view
//! built from them (contract §9).
//!
//! Receiving an event is a push onto an in-memory inbox; the server flushes the inbox in one
//! transaction every second (and before every inventory write, so an event is always judged
//! against the inventory of its moment). Nothing is fsynced per event, and a crash loses at
//! most the last second of status, which the cluster's next event repairs.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, OptionalExtension, params};

use super::SqlResultExt;
use super::polls::PollTracker;
use crate::domain::report::{self, Outcome, Reported, Settled, Severity, State, Via};
use crate::error::Result;

/// Events kept per cluster (the newest).
pub const EVENTS_PER_CLUSTER: i64 = 100;
/// Objects kept per cluster: a cluster reports its HelmReleases, Kustomizations and
/// ResourceSets, a few dozen; this bounds a misbehaving one.
pub const OBJECTS_PER_CLUSTER: i64 = 1000;
/// Bytes of an event message kept (notification-controller sends up to 39,000).
pub const MESSAGE_BYTES: usize = 2048;
/// Pending events that make the flusher run at once instead of at its next tick.
pub const FLUSH_SOON: usize = 2_000;
/// Pending events beyond which a receiver waits for a flush (bounds the inbox's memory).
pub const INBOX_CAPACITY: usize = 20_000;

/// One received event, reduced to what is kept.
#[derive(Clone, Debug)]
pub struct Report {
    pub cluster_dns: String,
    pub via: Via,
    pub received_at: i64,
    pub event_at: i64,
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
    /// Identifies the event, so a redelivery is recognised.
    pub digest: [u8; 16],
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

#[derive(Default)]
struct Inbox {
    pending: Mutex<Vec<Report>>,
    wake: tokio::sync::Notify,
    counts: Mutex<HashMap<(&'static str, &'static str, Severity), u64>>,
    accepted: AtomicU64,
}

/// Shared by every request; cheap to clone.
#[derive(Clone, Default)]
pub struct ReportInbox(Arc<Inbox>);

impl ReportInbox {
    /// Queues a report; answers how many are pending now.
    pub fn push(&self, report: Report) -> usize {
        let key = (
            known(&KINDS, &report.kind),
            known(&REASONS, &report.reason),
            report.severity,
        );
        *self
            .0
            .counts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(key)
            .or_default() += 1;
        self.0.accepted.fetch_add(1, Ordering::Relaxed);
        let pending = {
            let mut pending = self.0.pending.lock().unwrap_or_else(|e| e.into_inner());
            pending.push(report);
            pending.len()
        };
        if pending >= FLUSH_SOON {
            self.0.wake.notify_one();
        }
        pending
    }

    pub fn is_empty(&self) -> bool {
        self.0
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_empty()
    }

    /// Everything pending, in arrival order.
    pub fn take(&self) -> Vec<Report> {
        std::mem::take(&mut *self.0.pending.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Puts back a batch whose flush failed, ahead of what arrived meanwhile.
    pub fn requeue(&self, mut batch: Vec<Report>) {
        let mut pending = self.0.pending.lock().unwrap_or_else(|e| e.into_inner());
        batch.append(&mut pending);
        *pending = batch;
    }

    /// Resolves when enough is pending that the flusher should not wait for its tick.
    pub async fn wanted(&self) {
        self.0.wake.notified().await;
    }

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
/// skipped; an event older than what is stored for its object updates only the event list.
pub fn apply(tx: &Connection, batch: &[Report]) -> Result<usize> {
    let mut record = tx
        .prepare_cached(
            "INSERT INTO reported_events (cluster_dns, digest, received_at, via, event_at, kind, namespace, \
             name, severity, reason, message, revision, component) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13) \
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
                r.received_at,
                r.via.as_str(),
                r.event_at,
                r.kind,
                r.namespace,
                r.name,
                r.severity.as_str(),
                r.reason,
                r.message,
                r.revision,
                r.component
            ])
            .db()?;
        if inserted == 0 {
            continue;
        }
        applied += 1;
        latest
            .execute(params![
                r.cluster_dns,
                r.kind,
                r.namespace,
                r.name,
                r.component,
                r.event_at,
                r.received_at,
                r.severity.as_str(),
                r.reason,
                r.message,
                r.revision,
                r.via.as_str()
            ])
            .db()?;
        if r.kind == "HelmRelease"
            && let Some(outcome) = report::decisive(r.severity, &r.reason)
        {
            settle
                .execute(params![
                    r.cluster_dns,
                    r.kind,
                    r.namespace,
                    r.name,
                    outcome.as_str(),
                    r.event_at,
                    r.reason,
                    r.message,
                    r.revision,
                    r.via.as_str()
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

/// Keeps a cluster's newest events and objects, dropping the rest.
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
            "DELETE FROM reported_objects WHERE rowid IN (SELECT rowid FROM reported_objects \
             WHERE cluster_dns = ?1 ORDER BY received_at, event_at LIMIT ?2)",
        )
        .db()?
        .execute(params![cluster_dns, objects - OBJECTS_PER_CLUSTER])
        .db()?;
    }
    Ok(())
}

/// Drops the reports of DNS names no cluster has any more (deleted, or renamed).
pub fn prune_orphans(tx: &Connection) -> Result<usize> {
    let mut removed = 0;
    for table in ["reported_objects", "reported_events"] {
        removed += tx
            .execute(
                &format!(
                    "DELETE FROM {table} WHERE cluster_dns IN \
                     (SELECT DISTINCT cluster_dns FROM {table} EXCEPT SELECT cluster_dns FROM clusters)"
                ),
                [],
            )
            .db()?;
    }
    Ok(removed)
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

/// One component on one cluster: desired, reported, and the state that follows.
#[derive(Clone, Debug, PartialEq)]
pub struct ComponentState {
    pub cluster_id: String,
    pub cluster_dns: String,
    pub environment: String,
    pub component: String,
    pub enabled: bool,
    /// The feed's `source.oci_tag`.
    pub desired: String,
    pub state: State,
    /// The chart version of the latest decisive event.
    pub reported_revision: Option<String>,
    pub reason: Option<String>,
    pub message: Option<String>,
    /// When the event that decided the state happened (Unix seconds).
    pub event_at: Option<i64>,
    /// How that event was authenticated.
    pub via: Option<Via>,
}

/// The stored report of a HelmRelease, as far as convergence needs it.
struct HelmReport {
    component: Option<String>,
    name: String,
    event_at: i64,
    settled: Option<(Settled, i64, String, String, Option<Via>)>,
}

/// The convergence of every (cluster, component) in `scope`, ordered by cluster id and the
/// component's position in the feed. `polls` decides which clusters are stale at `now`.
pub fn convergence(
    conn: &Connection,
    scope: &Scope,
    polls: &PollTracker,
    now: u64,
) -> Result<Vec<ComponentState>> {
    let mut desired = conn
        .prepare_cached(
            "SELECT c.id, c.cluster_dns, c.environment, cc.component_id, cc.enabled, \
             coalesce(cc.oci_tag, pc.oci_tag) \
             FROM clusters c JOIN cluster_components cc ON cc.cluster_id = c.id \
             JOIN platform_components pc ON pc.id = cc.component_id \
             WHERE (?1 IS NULL OR c.id = ?1) AND (?2 IS NULL OR c.cluster_dns = ?2) \
             AND (?3 IS NULL OR cc.component_id = ?3) \
             ORDER BY c.id, cc.position",
        )
        .db()?;
    let rows = desired
        .query_map(
            params![scope.cluster, scope.cluster_dns, scope.component],
            |row| {
                Ok(ComponentState {
                    cluster_id: row.get(0)?,
                    cluster_dns: row.get(1)?,
                    environment: row.get(2)?,
                    component: row.get(3)?,
                    enabled: row.get(4)?,
                    desired: row.get(5)?,
                    state: State::Unknown,
                    reported_revision: None,
                    reason: None,
                    message: None,
                    event_at: None,
                    via: None,
                })
            },
        )
        .db()?
        .collect::<rusqlite::Result<Vec<_>>>()
        .db()?;
    let reports = helm_reports(conn, scope)?;
    let mut stale: HashMap<String, bool> = HashMap::new();
    Ok(rows
        .into_iter()
        .map(|mut row| {
            let is_stale = *stale
                .entry(row.cluster_dns.clone())
                .or_insert_with(|| polls.is_stale(&polls.get(&row.cluster_dns), now));
            let found = reports
                .get(row.cluster_dns.as_str())
                .and_then(|list| matching(list, &row.component));
            let reported = match found {
                None => Reported::Nothing,
                Some(HelmReport { settled: None, .. }) => Reported::Undecided,
                Some(HelmReport {
                    settled: Some((settled, at, reason, message, via)),
                    ..
                }) => {
                    row.reported_revision = settled.revision.clone();
                    row.event_at = Some(*at);
                    row.reason = Some(reason.clone());
                    row.message = Some(message.clone());
                    row.via = *via;
                    Reported::Settled(settled.clone())
                }
            };
            row.state = if is_stale && row.enabled {
                State::Stale
            } else {
                report::state(row.enabled, &row.desired, &reported)
            };
            row
        })
        .collect())
}

/// The HelmRelease of `component`: the one whose metadata names it, else the one named as
/// it (without metadata naming another component); the latest if several.
fn matching<'a>(list: &'a [HelmReport], component: &str) -> Option<&'a HelmReport> {
    let latest =
        |candidates: Vec<&'a HelmReport>| candidates.into_iter().max_by_key(|r| r.event_at);
    latest(
        list.iter()
            .filter(|r| r.component.as_deref() == Some(component))
            .collect(),
    )
    .or_else(|| {
        latest(
            list.iter()
                .filter(|r| r.component.is_none() && r.name == component)
                .collect(),
        )
    })
}

/// HelmRelease reports by cluster DNS name.
fn helm_reports(conn: &Connection, scope: &Scope) -> Result<HashMap<String, Vec<HelmReport>>> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT o.cluster_dns, o.component, o.name, o.event_at, o.outcome, o.outcome_at, \
             o.outcome_reason, o.outcome_message, o.outcome_revision, o.outcome_via, o.desired_then \
             FROM reported_objects o \
             WHERE o.kind = 'HelmRelease' \
             AND (?1 IS NULL OR o.cluster_dns = (SELECT cluster_dns FROM clusters WHERE id = ?1)) \
             AND (?2 IS NULL OR o.cluster_dns = ?2) \
             AND (?3 IS NULL OR o.component = ?3 OR (o.component IS NULL AND o.name = ?3))",
        )
        .db()?;
    let mut rows = stmt
        .query(params![scope.cluster, scope.cluster_dns, scope.component])
        .db()?;
    let mut by_cluster: HashMap<String, Vec<HelmReport>> = HashMap::new();
    while let Some(row) = rows.next().db()? {
        let outcome: Option<String> = row.get(4).db()?;
        let settled = match outcome.as_deref().and_then(Outcome::parse) {
            None => None,
            Some(outcome) => {
                let via: Option<String> = row.get(9).db()?;
                Some((
                    Settled {
                        outcome,
                        revision: row.get(8).db()?,
                        desired_then: row.get(10).db()?,
                    },
                    row.get::<_, Option<i64>>(5).db()?.unwrap_or_default(),
                    row.get::<_, Option<String>>(6).db()?.unwrap_or_default(),
                    row.get::<_, Option<String>>(7).db()?.unwrap_or_default(),
                    via.as_deref().and_then(Via::parse),
                ))
            }
        };
        by_cluster
            .entry(row.get(0).db()?)
            .or_default()
            .push(HelmReport {
                component: row.get(1).db()?,
                name: row.get(2).db()?,
                event_at: row.get(3).db()?,
                settled,
            });
    }
    Ok(by_cluster)
}

/// One stored event, as listed.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredEvent {
    pub event_at: i64,
    pub received_at: i64,
    pub via: Via,
    pub kind: String,
    pub namespace: String,
    pub name: String,
    pub severity: Severity,
    pub reason: String,
    pub message: String,
    pub revision: Option<String>,
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
        convergence(conn, &Scope::default(), &polls, 100).unwrap()[0].state
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
    fn counts_by_bounded_names() {
        let inbox = ReportInbox::default();
        let mut odd = report(1, Severity::Info, "SomethingNew", "v1");
        odd.kind = "GitRepository".into();
        inbox.push(odd);
        inbox.push(report(2, Severity::Error, "UpgradeFailed", "v1"));
        assert_eq!(
            inbox.counts(),
            vec![
                (("HelmRelease", "UpgradeFailed", "error"), 1),
                (("other", "other", "info"), 1)
            ]
        );
        assert_eq!(inbox.take().len(), 2);
        assert!(inbox.is_empty());
    }
}
