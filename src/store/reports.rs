//! Reports from the clusters' Flux (notification-controller events, README, "Flux reports
//! back"): what is kept of each event (its object's latest state and decisive outcome, the
//! cluster's last 100 events), applied in the committer's transaction (`inbox.rs` queues
//! them). Convergence is read from these rows by `convergence.rs`.

use rusqlite::{Connection, OptionalExtension, params};

use super::sql::SqlResultExt;
use crate::domain::report::{self, Severity, Via};
use crate::error::Result;

/// Events kept per cluster (the newest).
pub const EVENTS_PER_CLUSTER: i64 = 100;
/// Objects kept per cluster: a cluster reports its HelmReleases, Kustomizations and
/// ResourceSets, a few dozen; this bounds a misbehaving one.
pub const OBJECTS_PER_CLUSTER: i64 = 1000;
/// Bytes of an event message kept (notification-controller sends up to 39,000).
pub const MESSAGE_BYTES: usize = 2048;

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
    pub(super) fn footprint(&self) -> usize {
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
        .prepare_cached(&format!(
            "UPDATE reported_objects SET outcome = ?5, outcome_at = ?6, outcome_reason = ?7, \
             outcome_message = ?8, outcome_revision = ?9, outcome_via = ?10, desired_then = \
             (SELECT coalesce(cc.oci_tag, \
                (SELECT oc.oci_tag FROM overlays o JOIN overlay_components oc ON oc.overlay_id = o.id \
                 WHERE oc.component_id = pc.id AND oc.oci_tag IS NOT NULL AND {matches} \
                 ORDER BY o.priority DESC, o.id DESC LIMIT 1), \
                pc.oci_tag) \
              FROM clusters c \
              JOIN platform_components pc \
                ON pc.id = coalesce(reported_objects.component, reported_objects.name) \
              LEFT JOIN cluster_components cc ON cc.cluster_id = c.id AND cc.component_id = pc.id \
              WHERE c.cluster_dns = ?1 AND (cc.cluster_id IS NOT NULL OR EXISTS \
                (SELECT 1 FROM overlays o JOIN overlay_components oc ON oc.overlay_id = o.id \
                 WHERE oc.component_id = pc.id AND oc.enabled IS NOT NULL AND {matches}))) \
             WHERE cluster_dns = ?1 AND kind = ?2 AND namespace = ?3 AND name = ?4 \
             AND (outcome_at IS NULL OR outcome_at <= ?6)",
            matches = super::overlays::MATCHES_CLUSTER_C
        ))
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
pub(crate) mod tests {
    use super::*;
    use crate::domain::report::State;
    use crate::store::convergence::{Scope, for_each_component};
    use crate::store::polls::PollTracker;

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

    pub(crate) fn report(at: i64, severity: Severity, reason: &str, revision: &str) -> Report {
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
}
