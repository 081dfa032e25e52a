//! Schema versions, recorded in `PRAGMA user_version`.
//!
//! `MIGRATIONS[n]` takes the schema from version n to n + 1. Version 1 is `schema.sql`.
//! A shipped entry is never edited; a change to the schema is a new entry.

use rusqlite::Connection;

use super::sql::SqlResultExt;
use super::write_transaction;
use crate::error::{AppError, Result};

const MIGRATIONS: &[&str] = &[
    include_str!("../../schema.sql"),
    AUDIT_TOKENS,
    REPORTS,
    CLUSTER_LABELS,
    ROLLOUTS,
    HUB_HEARTBEAT,
    REPORTS_FOLLOW_THE_CLUSTER,
    OVERLAYS,
    WINDOWS,
    FAILURES_INDEX,
    COMPONENT_WRITES,
];

/// Version 2: token creation and revocation are audited (kind `tokens`). SQLite cannot alter
/// a CHECK, so the table is rebuilt, keeping its revisions and its AUTOINCREMENT counter
/// (pruned entries must not free their revisions: they were ETags).
const AUDIT_TOKENS: &str = "
CREATE TABLE audit_log_v2 (
    revision    INTEGER PRIMARY KEY AUTOINCREMENT,
    at          INTEGER NOT NULL,
    actor       TEXT NOT NULL,
    method      TEXT NOT NULL CHECK (method IN ('POST', 'PUT', 'DELETE', 'REVERT', 'IMPORT')),
    kind        TEXT NOT NULL
                CHECK (kind IN ('clusters', 'platform_components', 'namespaces', 'rolebindings', 'tokens')),
    resource_id TEXT NOT NULL,
    before      TEXT CHECK (before IS NULL OR json_valid(before)),
    after       TEXT CHECK (after IS NULL OR json_valid(after))
);
INSERT INTO audit_log_v2 SELECT revision, at, actor, method, kind, resource_id, before, after FROM audit_log;
DELETE FROM sqlite_sequence WHERE name = 'audit_log_v2';
INSERT INTO sqlite_sequence (name, seq) SELECT 'audit_log_v2', seq FROM sqlite_sequence WHERE name = 'audit_log';
DROP TABLE audit_log;
ALTER TABLE audit_log_v2 RENAME TO audit_log;
CREATE INDEX audit_log_by_resource ON audit_log (kind, resource_id, revision);
";

/// Version 3: what each cluster's Flux reports (README, "Flux reports back"). Status, not inventory: written
/// in batches, never audited, never part of the inventory revision; keyed by DNS name like
/// `cluster_polls` (that is what a cluster posts to), rows of clusters that are gone are pruned.
const REPORTS: &str = "
-- The latest state of each object a cluster reported, and the latest decisive event
-- (a success or a failure) of it, with the oci_tag the inventory wanted at that moment.
CREATE TABLE reported_objects (
    cluster_dns      TEXT NOT NULL,
    kind             TEXT NOT NULL,
    namespace        TEXT NOT NULL,
    name             TEXT NOT NULL,
    component        TEXT,
    event_at         INTEGER NOT NULL,
    received_at      INTEGER NOT NULL,
    severity         TEXT NOT NULL CHECK (severity IN ('info', 'error')),
    reason           TEXT NOT NULL,
    message          TEXT NOT NULL,
    revision         TEXT,
    via              TEXT NOT NULL CHECK (via IN ('cluster', 'fleet', 'write')),
    outcome          TEXT CHECK (outcome IN ('success', 'failure')),
    outcome_at       INTEGER,
    outcome_reason   TEXT,
    outcome_message  TEXT,
    outcome_revision TEXT,
    outcome_via      TEXT CHECK (outcome_via IN ('cluster', 'fleet', 'write')),
    desired_then     TEXT,
    PRIMARY KEY (cluster_dns, kind, namespace, name)
) STRICT;

-- The last events of each cluster (trimmed to 100 per cluster as they arrive). The digest
-- makes a redelivered event a no-op.
CREATE TABLE reported_events (
    id          INTEGER PRIMARY KEY,
    cluster_dns TEXT NOT NULL,
    digest      BLOB NOT NULL,
    received_at INTEGER NOT NULL,
    via         TEXT NOT NULL CHECK (via IN ('cluster', 'fleet', 'write')),
    event_at    INTEGER NOT NULL,
    kind        TEXT NOT NULL,
    namespace   TEXT NOT NULL,
    name        TEXT NOT NULL,
    severity    TEXT NOT NULL CHECK (severity IN ('info', 'error')),
    reason      TEXT NOT NULL,
    message     TEXT NOT NULL,
    revision    TEXT,
    component   TEXT,
    UNIQUE (cluster_dns, digest)
) STRICT;
CREATE INDEX reported_events_by_cluster ON reported_events (cluster_dns, id);
";

/// Version 4: free-form labels on clusters (README, "Progressive rollouts"), which rollouts select waves by.
/// Not part of any feed. Keys and values follow Kubernetes label syntax (checked on write).
const CLUSTER_LABELS: &str = "
CREATE TABLE cluster_labels (
    cluster_id TEXT NOT NULL REFERENCES clusters (id) ON DELETE CASCADE,
    key        TEXT NOT NULL CHECK (length(key) BETWEEN 1 AND 317),
    value      TEXT NOT NULL CHECK (length(value) <= 63),
    PRIMARY KEY (cluster_id, key)
) STRICT, WITHOUT ROWID;
CREATE INDEX cluster_labels_by_label ON cluster_labels (key, value);
";

/// Version 5: progressive rollouts (README, "Progressive rollouts"). Every transition of a rollout is one
/// transaction over these rows, so a restarted server resumes it where it stood. Rows keep
/// their history when a cluster goes (no reference to `clusters`).
const ROLLOUTS: &str = "
CREATE TABLE rollouts (
    id           TEXT PRIMARY KEY NOT NULL
                 CHECK (length(id) BETWEEN 1 AND 63 AND id NOT GLOB '*[^a-z0-9-]*'),
    component    TEXT NOT NULL,
    -- The request as given (target, waves, gate, times, failure policy).
    spec         TEXT NOT NULL CHECK (json_valid(spec)),
    state        TEXT NOT NULL
                 CHECK (state IN ('planned', 'running', 'paused', 'succeeded', 'aborted', 'rolled_back')),
    current_step INTEGER,
    created_at   INTEGER NOT NULL,
    started_at   INTEGER,
    finished_at  INTEGER,
    -- At promotion: the clusters left on their previous values, as JSON.
    kept         TEXT CHECK (kept IS NULL OR json_valid(kept))
) STRICT;
-- One active rollout per component, whatever races.
CREATE UNIQUE INDEX rollouts_one_active ON rollouts (component)
    WHERE state IN ('planned', 'running', 'paused');

CREATE TABLE rollout_steps (
    rollout_id  TEXT NOT NULL REFERENCES rollouts (id) ON DELETE CASCADE,
    step        INTEGER NOT NULL,
    wave        INTEGER NOT NULL,
    state       TEXT NOT NULL CHECK (state IN ('pending', 'waiting', 'baking', 'passed', 'failed')),
    started_at  INTEGER,
    deadline_at INTEGER,
    passed_at   INTEGER,
    bake_until  INTEGER,
    PRIMARY KEY (rollout_id, step)
) STRICT, WITHOUT ROWID;

-- Every cluster that used the component when the rollout was planned. `step` is NULL for
-- pinned and unselected ones. `planned_*` are its overrides when planned, `previous_*` those
-- its step replaced (what a rollback restores); `changed` = the rollout gave it the target.
CREATE TABLE rollout_clusters (
    rollout_id              TEXT NOT NULL REFERENCES rollouts (id) ON DELETE CASCADE,
    cluster_id              TEXT NOT NULL,
    cluster_dns             TEXT NOT NULL,
    step                    INTEGER,
    state                   TEXT NOT NULL CHECK (state IN ('pending', 'progressing', 'passed', 'failed',
                                'skipped', 'pinned', 'unselected', 'rolled_back')),
    reason                  TEXT,
    message                 TEXT,
    changed                 INTEGER NOT NULL DEFAULT 0 CHECK (changed IN (0, 1)),
    planned_oci_tag         TEXT,
    planned_component_path  TEXT,
    previous_oci_tag        TEXT,
    previous_component_path TEXT,
    PRIMARY KEY (rollout_id, cluster_id)
) STRICT, WITHOUT ROWID;
CREATE INDEX rollout_clusters_by_step ON rollout_clusters (rollout_id, step);

CREATE TABLE rollout_transitions (
    rollout_id TEXT NOT NULL REFERENCES rollouts (id) ON DELETE CASCADE,
    seq        INTEGER NOT NULL,
    at         INTEGER NOT NULL,
    state      TEXT NOT NULL,
    step       INTEGER,
    actor      TEXT NOT NULL,
    reason     TEXT NOT NULL,
    PRIMARY KEY (rollout_id, seq)
) STRICT, WITHOUT ROWID;
";

/// Version 6: the hub's heartbeat (README, "Edge replicas on Litestream"), rewritten every 30 s by a hub so that an
/// edge replica can tell how old its copy is. Not inventory: no revision, no audit.
const HUB_HEARTBEAT: &str = "
CREATE TABLE hub_heartbeat (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    at INTEGER NOT NULL
) STRICT;
INSERT INTO hub_heartbeat (id, at) VALUES (1, 0);
";

/// Version 7: reports and poll times belong to the cluster, not to its DNS name. They are keyed by DNS name (what a cluster posts to and polls), so a cluster deleted
/// and created again under the same name must not inherit what the old one reported, and a
/// cluster whose name changes keeps its own. Triggers, so every write path obeys them.
const REPORTS_FOLLOW_THE_CLUSTER: &str = "
DELETE FROM reported_objects WHERE cluster_dns NOT IN (SELECT cluster_dns FROM clusters);
DELETE FROM reported_events WHERE cluster_dns NOT IN (SELECT cluster_dns FROM clusters);
DELETE FROM cluster_polls WHERE cluster_dns NOT IN (SELECT cluster_dns FROM clusters);
CREATE TRIGGER clusters_forget_reports AFTER DELETE ON clusters BEGIN
    DELETE FROM reported_objects WHERE cluster_dns = OLD.cluster_dns;
    DELETE FROM reported_events WHERE cluster_dns = OLD.cluster_dns;
    DELETE FROM cluster_polls WHERE cluster_dns = OLD.cluster_dns;
END;
CREATE TRIGGER clusters_move_reports AFTER UPDATE OF cluster_dns ON clusters
WHEN OLD.cluster_dns <> NEW.cluster_dns BEGIN
    DELETE FROM reported_objects WHERE cluster_dns = NEW.cluster_dns;
    DELETE FROM reported_events WHERE cluster_dns = NEW.cluster_dns;
    DELETE FROM cluster_polls WHERE cluster_dns = NEW.cluster_dns;
    UPDATE reported_objects SET cluster_dns = NEW.cluster_dns WHERE cluster_dns = OLD.cluster_dns;
    UPDATE reported_events SET cluster_dns = NEW.cluster_dns WHERE cluster_dns = OLD.cluster_dns;
    UPDATE cluster_polls SET cluster_dns = NEW.cluster_dns WHERE cluster_dns = OLD.cluster_dns;
END;
";

/// Version 8: overlays (README, "Overlays"): values and assignments for every cluster a
/// selector matches. Their references into the catalog RESTRICT like a cluster's; the audit
/// trail gains the kind `overlays` (SQLite cannot alter a CHECK: the table is rebuilt as in
/// version 2, keeping its revisions and AUTOINCREMENT counter).
const OVERLAYS: &str = "
CREATE TABLE overlays (
    id          TEXT PRIMARY KEY NOT NULL
                CHECK (length(id) BETWEEN 1 AND 63 AND id NOT GLOB '*[^a-z0-9-]*'),
    description TEXT NOT NULL DEFAULT '',
    environment TEXT CHECK (environment IS NULL OR environment IN ('dev', 'qa', 'uat', 'prod')),
    priority    INTEGER NOT NULL DEFAULT 0
) STRICT;
CREATE TABLE overlay_labels (
    overlay_id TEXT NOT NULL REFERENCES overlays (id) ON DELETE CASCADE,
    key        TEXT NOT NULL CHECK (length(key) BETWEEN 1 AND 317),
    value      TEXT NOT NULL CHECK (length(value) <= 63),
    PRIMARY KEY (overlay_id, key)
) STRICT, WITHOUT ROWID;
CREATE TABLE overlay_components (
    overlay_id     TEXT NOT NULL REFERENCES overlays (id) ON DELETE CASCADE,
    component_id   TEXT NOT NULL REFERENCES platform_components (id) ON DELETE RESTRICT,
    position       INTEGER NOT NULL,
    enabled        INTEGER CHECK (enabled IS NULL OR enabled IN (0, 1)),
    oci_tag        TEXT,
    component_path TEXT,
    PRIMARY KEY (overlay_id, component_id)
) STRICT, WITHOUT ROWID;
CREATE INDEX overlay_components_by_component ON overlay_components (component_id);
CREATE TABLE overlay_patches (
    overlay_id   TEXT NOT NULL REFERENCES overlays (id) ON DELETE CASCADE,
    component_id TEXT NOT NULL REFERENCES platform_components (id) ON DELETE RESTRICT,
    patch        TEXT NOT NULL CHECK (json_valid(patch) AND json_type(patch) = 'object'),
    PRIMARY KEY (overlay_id, component_id)
) STRICT, WITHOUT ROWID;
CREATE INDEX overlay_patches_by_component ON overlay_patches (component_id);
CREATE TABLE overlay_namespaces (
    overlay_id   TEXT NOT NULL REFERENCES overlays (id) ON DELETE CASCADE,
    namespace_id TEXT NOT NULL REFERENCES namespaces (id) ON DELETE RESTRICT,
    position     INTEGER NOT NULL,
    PRIMARY KEY (overlay_id, namespace_id)
) STRICT, WITHOUT ROWID;
CREATE INDEX overlay_namespaces_by_namespace ON overlay_namespaces (namespace_id);
CREATE TABLE overlay_rolebindings (
    overlay_id     TEXT NOT NULL REFERENCES overlays (id) ON DELETE CASCADE,
    rolebinding_id TEXT NOT NULL REFERENCES rolebindings (id) ON DELETE RESTRICT,
    position       INTEGER NOT NULL,
    PRIMARY KEY (overlay_id, rolebinding_id)
) STRICT, WITHOUT ROWID;
CREATE INDEX overlay_rolebindings_by_rolebinding ON overlay_rolebindings (rolebinding_id);

CREATE TABLE audit_log_v8 (
    revision    INTEGER PRIMARY KEY AUTOINCREMENT,
    at          INTEGER NOT NULL,
    actor       TEXT NOT NULL,
    method      TEXT NOT NULL CHECK (method IN ('POST', 'PUT', 'DELETE', 'REVERT', 'IMPORT')),
    kind        TEXT NOT NULL
                CHECK (kind IN ('clusters', 'platform_components', 'namespaces', 'rolebindings', 'tokens', 'overlays')),
    resource_id TEXT NOT NULL,
    before      TEXT CHECK (before IS NULL OR json_valid(before)),
    after       TEXT CHECK (after IS NULL OR json_valid(after))
);
INSERT INTO audit_log_v8 SELECT revision, at, actor, method, kind, resource_id, before, after FROM audit_log;
DELETE FROM sqlite_sequence WHERE name = 'audit_log_v8';
INSERT INTO sqlite_sequence (name, seq) SELECT 'audit_log_v8', seq FROM sqlite_sequence WHERE name = 'audit_log';
DROP TABLE audit_log;
ALTER TABLE audit_log_v8 RENAME TO audit_log;
CREATE INDEX audit_log_by_resource ON audit_log (kind, resource_id, revision);
-- A rollout step gives a cluster that has the component only from an overlay an entry of
-- its own; a rollback or the promotion removes what the rollout added.
ALTER TABLE rollout_clusters ADD COLUMN added INTEGER NOT NULL DEFAULT 0 CHECK (added IN (0, 1));
";

/// Version 9: maintenance windows and freezes (README, "Maintenance windows"). A window's
/// selector labels are a JSON object, matched with `json_each` like an overlay's selector.
/// The audit trail gains the kind `windows` and `window_override` (the closed clusters a
/// confirmed write changed, and the windows it overrode); a rollout's cluster may be
/// `waiting_window`, with the instant its window opens. Both CHECKs need their tables
/// rebuilt, keeping every row (and the audit's AUTOINCREMENT counter).
const WINDOWS: &str = "
CREATE TABLE windows (
    id               TEXT PRIMARY KEY NOT NULL
                     CHECK (length(id) BETWEEN 1 AND 63 AND id NOT GLOB '*[^a-z0-9-]*'),
    description      TEXT NOT NULL DEFAULT '',
    kind             TEXT NOT NULL CHECK (kind IN ('deny', 'allow')),
    environment      TEXT CHECK (environment IS NULL OR environment IN ('dev', 'qa', 'uat', 'prod')),
    labels           TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(labels) AND json_type(labels) = 'object'),
    -- Recurring: weekdays as 'mon,tue', local start 'HH:MM', minutes, IANA zone.
    days             TEXT,
    start            TEXT,
    duration_minutes INTEGER CHECK (duration_minutes IS NULL OR duration_minutes BETWEEN 1 AND 10080),
    time_zone        TEXT,
    -- Absolute: RFC 3339 instants as given.
    absolute_from    TEXT,
    absolute_to      TEXT,
    CHECK ((days IS NULL) <> (absolute_from IS NULL))
) STRICT;

CREATE TABLE audit_log_v9 (
    revision        INTEGER PRIMARY KEY AUTOINCREMENT,
    at              INTEGER NOT NULL,
    actor           TEXT NOT NULL,
    method          TEXT NOT NULL CHECK (method IN ('POST', 'PUT', 'DELETE', 'REVERT', 'IMPORT')),
    kind            TEXT NOT NULL
                    CHECK (kind IN ('clusters', 'platform_components', 'namespaces', 'rolebindings', 'tokens', 'overlays', 'windows')),
    resource_id     TEXT NOT NULL,
    before          TEXT CHECK (before IS NULL OR json_valid(before)),
    after           TEXT CHECK (after IS NULL OR json_valid(after)),
    window_override TEXT CHECK (window_override IS NULL OR json_valid(window_override))
);
INSERT INTO audit_log_v9 (revision, at, actor, method, kind, resource_id, before, after)
    SELECT revision, at, actor, method, kind, resource_id, before, after FROM audit_log;
DELETE FROM sqlite_sequence WHERE name = 'audit_log_v9';
INSERT INTO sqlite_sequence (name, seq) SELECT 'audit_log_v9', seq FROM sqlite_sequence WHERE name = 'audit_log';
DROP TABLE audit_log;
ALTER TABLE audit_log_v9 RENAME TO audit_log;
CREATE INDEX audit_log_by_resource ON audit_log (kind, resource_id, revision);

CREATE TABLE rollout_clusters_v9 (
    rollout_id              TEXT NOT NULL REFERENCES rollouts (id) ON DELETE CASCADE,
    cluster_id              TEXT NOT NULL,
    cluster_dns             TEXT NOT NULL,
    step                    INTEGER,
    state                   TEXT NOT NULL CHECK (state IN ('pending', 'progressing', 'passed', 'failed',
                                'skipped', 'pinned', 'unselected', 'rolled_back', 'waiting_window')),
    reason                  TEXT,
    message                 TEXT,
    changed                 INTEGER NOT NULL DEFAULT 0 CHECK (changed IN (0, 1)),
    planned_oci_tag         TEXT,
    planned_component_path  TEXT,
    previous_oci_tag        TEXT,
    previous_component_path TEXT,
    added                   INTEGER NOT NULL DEFAULT 0 CHECK (added IN (0, 1)),
    -- waiting_window: when its window opens (Unix seconds); NULL: look again now.
    window_opens_at         INTEGER,
    PRIMARY KEY (rollout_id, cluster_id)
) STRICT, WITHOUT ROWID;
INSERT INTO rollout_clusters_v9 (rollout_id, cluster_id, cluster_dns, step, state, reason, message,
        changed, planned_oci_tag, planned_component_path, previous_oci_tag, previous_component_path, added)
    SELECT rollout_id, cluster_id, cluster_dns, step, state, reason, message, changed, planned_oci_tag,
        planned_component_path, previous_oci_tag, previous_component_path, added FROM rollout_clusters;
DROP TABLE rollout_clusters;
ALTER TABLE rollout_clusters_v9 RENAME TO rollout_clusters;
CREATE INDEX rollout_clusters_by_step ON rollout_clusters (rollout_id, step);
";

/// `PRAGMA application_id` of a flux-inputs database: "FLXI".
pub const APPLICATION_ID: i32 = 0x464C_5849;

/// Refuses a file that is not a flux-inputs database before anything is written to it:
/// another program's application id, or a non-empty file with neither our id nor our
/// tables (databases of versions before the id was set are recognised by their tables).
pub(super) fn check_ownership(conn: &Connection) -> Result<()> {
    let id: i32 = conn
        .query_row("PRAGMA application_id", [], |row| row.get(0))
        .db()?;
    if id == APPLICATION_ID {
        return Ok(());
    }
    let tables: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")
        .db()?
        .query_map([], |row| row.get(0))
        .db()?
        .collect::<rusqlite::Result<_>>()
        .db()?;
    let ours = tables.iter().any(|t| t == "inventory_revision") && schema_version(conn)? >= 1;
    if id == 0 && (tables.is_empty() || ours) {
        return Ok(());
    }
    Err(AppError::Internal(format!(
        "this file is not a flux-inputs database (application_id {id:#x}, tables: {}); \
         refusing to add the inventory to it: point DATABASE_PATH at a new or flux-inputs file",
        if tables.is_empty() {
            "none".to_owned()
        } else {
            tables.join(", ")
        }
    )))
}

/// Version 10: the clusters with a reported failure (the fleet page's count, filter and first
/// rows) come from a partial index of the failing HelmReleases instead of a scan of every
/// reported object.
const FAILURES_INDEX: &str = "
CREATE INDEX reported_failures ON reported_objects (cluster_dns)
    WHERE kind = 'HelmRelease' AND outcome = 'failure';
";

/// Version 11: a write of one component's entry on many clusters (a rollout's step,
/// rollback or promotion) is audited as one entry of kind `cluster_components`, and
/// `audit_clusters` names the clusters it changed (their ETags and histories). The audit
/// table is rebuilt for its CHECK, keeping revisions and the AUTOINCREMENT counter.
const COMPONENT_WRITES: &str = "
CREATE TABLE audit_log_v11 (
    revision        INTEGER PRIMARY KEY AUTOINCREMENT,
    at              INTEGER NOT NULL,
    actor           TEXT NOT NULL,
    method          TEXT NOT NULL CHECK (method IN ('POST', 'PUT', 'DELETE', 'REVERT', 'IMPORT')),
    kind            TEXT NOT NULL
                    CHECK (kind IN ('clusters', 'platform_components', 'namespaces', 'rolebindings',
                        'tokens', 'overlays', 'windows', 'cluster_components')),
    resource_id     TEXT NOT NULL,
    before          TEXT CHECK (before IS NULL OR json_valid(before)),
    after           TEXT CHECK (after IS NULL OR json_valid(after)),
    window_override TEXT CHECK (window_override IS NULL OR json_valid(window_override))
);
INSERT INTO audit_log_v11 SELECT revision, at, actor, method, kind, resource_id, before, after,
    window_override FROM audit_log;
DELETE FROM sqlite_sequence WHERE name = 'audit_log_v11';
INSERT INTO sqlite_sequence (name, seq) SELECT 'audit_log_v11', seq FROM sqlite_sequence WHERE name = 'audit_log';
DROP TABLE audit_log;
ALTER TABLE audit_log_v11 RENAME TO audit_log;
CREATE INDEX audit_log_by_resource ON audit_log (kind, resource_id, revision);

-- The clusters a `cluster_components` entry changed. No foreign key: the audit table is
-- rebuilt by migrations; pruning removes these rows with their entries.
CREATE TABLE audit_clusters (
    cluster_id TEXT NOT NULL,
    revision   INTEGER NOT NULL,
    PRIMARY KEY (cluster_id, revision)
) STRICT, WITHOUT ROWID;
CREATE INDEX audit_clusters_by_revision ON audit_clusters (revision);
";

/// The schema version this binary serves.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// What start-up found and did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Migration {
    /// A new, empty database: the schema was created (and the seed, if any, loaded).
    Created,
    /// An older schema was brought up to date.
    Upgraded { from: i64 },
    /// Nothing to do.
    Current,
}

pub fn schema_version(conn: &Connection) -> Result<i64> {
    conn.query_row("PRAGMA user_version", [], |row| row.get(0))
        .db()
}

/// Brings the schema up to date in one transaction. `on_create` runs in that same
/// transaction when the database was empty, so a failing seed leaves the file untouched.
pub fn migrate(
    conn: &mut Connection,
    on_create: impl FnOnce(&rusqlite::Transaction) -> Result<()>,
) -> Result<Migration> {
    check_ownership(conn)?;
    write_transaction(conn, |tx| {
        let from = schema_version(tx)?;
        if from > SCHEMA_VERSION {
            return Err(AppError::Internal(format!(
                "the database schema is version {from}, newer than this binary's {SCHEMA_VERSION}; \
                 run a newer flux-inputs or restore a backup"
            )));
        }
        for (index, step) in MIGRATIONS.iter().enumerate().skip(from as usize) {
            tx.execute_batch(step).map_err(|err| {
                AppError::Internal(format!(
                    "migration to schema version {} failed: {err}",
                    index + 1
                ))
            })?;
        }
        tx.pragma_update(None, "user_version", SCHEMA_VERSION)
            .db()?;
        tx.pragma_update(None, "application_id", APPLICATION_ID)
            .db()?;
        Ok(match from {
            0 => {
                on_create(tx)?;
                Migration::Created
            }
            v if v == SCHEMA_VERSION => Migration::Current,
            v => Migration::Upgraded { from: v },
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrates_an_empty_database_once() {
        let mut conn = Connection::open_in_memory().unwrap();
        assert_eq!(migrate(&mut conn, |_| Ok(())).unwrap(), Migration::Created);
        assert_eq!(schema_version(&conn).unwrap(), SCHEMA_VERSION);
        assert_eq!(
            migrate(&mut conn, |_| panic!("not on a current db")).unwrap(),
            Migration::Current
        );
    }

    #[test]
    fn a_failing_seed_leaves_the_database_empty() {
        let mut conn = Connection::open_in_memory().unwrap();
        let result = migrate(&mut conn, |_| Err(AppError::Validation("bad seed".into())));
        assert!(result.is_err());
        assert_eq!(schema_version(&conn).unwrap(), 0);
    }

    #[test]
    fn refuses_another_programs_database_and_adopts_an_older_one_of_ours() {
        let mut foreign = Connection::open_in_memory().unwrap();
        foreign
            .execute_batch("CREATE TABLE invoices (id INTEGER PRIMARY KEY)")
            .unwrap();
        let err = migrate(&mut foreign, |_| Ok(())).unwrap_err().to_string();
        assert!(
            err.contains("not a flux-inputs database") && err.contains("invoices"),
            "{err}"
        );
        assert_eq!(schema_version(&foreign).unwrap(), 0, "nothing was added");

        let mut other_app = Connection::open_in_memory().unwrap();
        other_app.pragma_update(None, "application_id", 7).unwrap();
        assert!(migrate(&mut other_app, |_| Ok(())).is_err());

        // A version-1 database from before the application id: upgraded, kept, marked.
        let mut old = Connection::open_in_memory().unwrap();
        old.execute_batch(MIGRATIONS[0]).unwrap();
        old.pragma_update(None, "user_version", 1).unwrap();
        old.execute_batch(
            "INSERT INTO audit_log (at, actor, method, kind, resource_id) VALUES (1, 'a', 'POST', 'clusters', 'c1');
             INSERT INTO audit_log (at, actor, method, kind, resource_id) VALUES (1, 'a', 'POST', 'clusters', 'c2');
             DELETE FROM audit_log WHERE revision = 2;",
        )
        .unwrap();
        assert_eq!(
            migrate(&mut old, |_| Ok(())).unwrap(),
            Migration::Upgraded { from: 1 }
        );
        let id: i32 = old
            .query_row("PRAGMA application_id", [], |r| r.get(0))
            .unwrap();
        assert_eq!(id, APPLICATION_ID);
        old.execute(
            "INSERT INTO audit_log (at, actor, method, kind, resource_id) VALUES (2, 'a', 'POST', 'tokens', 't')",
            [],
        )
        .unwrap();
        let last: i64 = old
            .query_row("SELECT max(revision) FROM audit_log", [], |r| r.get(0))
            .unwrap();
        assert_eq!(last, 3, "a pruned revision is never handed out again");
    }

    #[test]
    fn version_8_keeps_its_audit_trail_and_rollouts_when_windows_arrive() {
        let mut conn = Connection::open_in_memory().unwrap();
        for migration in &MIGRATIONS[..8] {
            conn.execute_batch(migration).unwrap();
        }
        conn.pragma_update(None, "user_version", 8).unwrap();
        conn.pragma_update(None, "application_id", APPLICATION_ID)
            .unwrap();
        conn.execute_batch(
            "INSERT INTO audit_log (at, actor, method, kind, resource_id, after) VALUES (1, 'a', 'POST', 'overlays', 'o', '{}');
             INSERT INTO audit_log (at, actor, method, kind, resource_id) VALUES (2, 'a', 'POST', 'clusters', 'c');
             DELETE FROM audit_log WHERE revision = 2;
             INSERT INTO rollouts (id, component, spec, state, created_at) VALUES ('r', 'x', '{}', 'running', 1);
             INSERT INTO rollout_clusters (rollout_id, cluster_id, cluster_dns, step, state, changed, added)
                 VALUES ('r', 'c', 'c.example.com', 0, 'progressing', 1, 1);",
        )
        .unwrap();
        assert_eq!(
            migrate(&mut conn, |_| Ok(())).unwrap(),
            Migration::Upgraded { from: 8 }
        );
        let kept: (String, bool, Option<i64>) = conn
            .query_row(
                "SELECT state, added, window_opens_at FROM rollout_clusters WHERE cluster_id = 'c'",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .unwrap();
        assert_eq!(kept, ("progressing".into(), true, None));
        conn.execute(
            "INSERT INTO audit_log (at, actor, method, kind, resource_id, window_override) \
             VALUES (3, 'a', 'POST', 'windows', 'w', '{\"clusters\": 1}')",
            [],
        )
        .unwrap();
        let revisions: Vec<i64> = conn
            .prepare("SELECT revision FROM audit_log ORDER BY revision")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        assert_eq!(
            revisions,
            vec![1, 3],
            "a pruned revision is never handed out again"
        );
        conn.execute(
            "UPDATE rollout_clusters SET state = 'waiting_window', window_opens_at = 9",
            [],
        )
        .unwrap();
    }

    #[test]
    fn refuses_a_newer_schema() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .unwrap();
        let err = migrate(&mut conn, |_| Ok(())).unwrap_err();
        assert!(err.to_string().contains("newer than this binary"));
    }
}
