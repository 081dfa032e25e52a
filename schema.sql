-- flux-inputs schema, version 1.
--
-- Applied at start-up inside one transaction; `PRAGMA user_version` records the version.
-- Never edit a shipped version: later changes are new migrations in src/store/migrate.rs.
--
-- Conventions:
--   * every table is STRICT, so a wrong-typed value is an error, not a silent cast;
--   * references from the cluster side CASCADE (deleting a cluster removes its assignments),
--     references into the catalog RESTRICT (a catalog entry in use cannot vanish);
--   * `position` columns keep the order the client sent, which is the order Flux sees;
--   * JSON only where the value is genuinely free-form (Helm value patches).

-- Name CHECKs are a backstop for the full syntax rules in src/domain/names.rs
-- (SQLite has no regex; GLOB expresses the character set and length).

CREATE TABLE clusters (
    id           TEXT PRIMARY KEY NOT NULL
                 CHECK (length(id) BETWEEN 1 AND 253 AND id NOT GLOB '*[^a-z0-9.-]*'),
    cluster_name TEXT NOT NULL CHECK (length(cluster_name) > 0),
    cluster_dns  TEXT NOT NULL UNIQUE
                 CHECK (length(cluster_dns) BETWEEN 1 AND 253 AND cluster_dns NOT GLOB '*[^a-z0-9.-]*'),
    environment  TEXT NOT NULL CHECK (environment IN ('dev', 'qa', 'uat', 'prod')),
    node_count   INTEGER CHECK (node_count IS NULL OR node_count >= 0),
    vm_image     TEXT,
    k0s_version  TEXT
) STRICT;

CREATE TABLE platform_components (
    id                  TEXT PRIMARY KEY NOT NULL
                        CHECK (length(id) BETWEEN 1 AND 63 AND id NOT GLOB '*[^a-z0-9-]*'),
    component_path      TEXT NOT NULL,
    component_version   TEXT NOT NULL,
    oci_url             TEXT NOT NULL,
    oci_tag             TEXT NOT NULL,
    cluster_env_enabled INTEGER NOT NULL DEFAULT 0 CHECK (cluster_env_enabled IN (0, 1))
) STRICT;

-- component_id depends on depends_on_id. Deleting a component drops its own edges;
-- deleting a component others depend on is refused.
CREATE TABLE component_dependencies (
    component_id  TEXT NOT NULL REFERENCES platform_components (id) ON DELETE CASCADE,
    depends_on_id TEXT NOT NULL REFERENCES platform_components (id) ON DELETE RESTRICT,
    position      INTEGER NOT NULL,
    PRIMARY KEY (component_id, depends_on_id),
    UNIQUE (component_id, position),
    CHECK (component_id <> depends_on_id)
) STRICT, WITHOUT ROWID;
CREATE INDEX component_dependencies_by_target ON component_dependencies (depends_on_id);

-- A cluster's platform_components[] entries with their per-cluster overrides
-- (NULL = use the catalog value).
CREATE TABLE cluster_components (
    cluster_id     TEXT NOT NULL REFERENCES clusters (id) ON DELETE CASCADE,
    component_id   TEXT NOT NULL REFERENCES platform_components (id) ON DELETE RESTRICT,
    position       INTEGER NOT NULL,
    enabled        INTEGER NOT NULL CHECK (enabled IN (0, 1)),
    oci_tag        TEXT,
    component_path TEXT,
    PRIMARY KEY (cluster_id, component_id),
    UNIQUE (cluster_id, position)
) STRICT, WITHOUT ROWID;
CREATE INDEX cluster_components_by_component ON cluster_components (component_id);

-- Helm value patches: one JSON object per (cluster, component). The composite foreign key
-- makes a patch for a component the cluster does not reference impossible.
CREATE TABLE cluster_patches (
    cluster_id   TEXT NOT NULL,
    component_id TEXT NOT NULL,
    patch        TEXT NOT NULL CHECK (json_valid(patch) AND json_type(patch) = 'object'),
    PRIMARY KEY (cluster_id, component_id),
    FOREIGN KEY (cluster_id, component_id)
        REFERENCES cluster_components (cluster_id, component_id) ON DELETE CASCADE
) STRICT, WITHOUT ROWID;

CREATE TABLE namespaces (
    id TEXT PRIMARY KEY NOT NULL
       CHECK (length(id) BETWEEN 1 AND 63 AND id NOT GLOB '*[^a-z0-9-]*')
) STRICT;

-- Labels and annotations share one table; `kind` tells them apart.
CREATE TABLE namespace_metadata (
    namespace_id TEXT NOT NULL REFERENCES namespaces (id) ON DELETE CASCADE,
    kind         TEXT NOT NULL CHECK (kind IN ('label', 'annotation')),
    key          TEXT NOT NULL CHECK (length(key) BETWEEN 1 AND 317),
    value        TEXT NOT NULL,
    PRIMARY KEY (namespace_id, kind, key)
) STRICT, WITHOUT ROWID;

CREATE TABLE rolebindings (
    id   TEXT PRIMARY KEY NOT NULL
         CHECK (length(id) BETWEEN 1 AND 63 AND id NOT GLOB '*[^a-z0-9-]*'),
    role TEXT NOT NULL CHECK (length(role) > 0)
) STRICT;

CREATE TABLE rolebinding_subjects (
    rolebinding_id TEXT NOT NULL REFERENCES rolebindings (id) ON DELETE CASCADE,
    position       INTEGER NOT NULL,
    kind           TEXT NOT NULL CHECK (kind IN ('User', 'Group', 'ServiceAccount')),
    name           TEXT NOT NULL CHECK (length(name) > 0),
    api_group      TEXT,
    namespace      TEXT,
    PRIMARY KEY (rolebinding_id, position)
) STRICT, WITHOUT ROWID;

CREATE TABLE cluster_namespaces (
    cluster_id   TEXT NOT NULL REFERENCES clusters (id) ON DELETE CASCADE,
    namespace_id TEXT NOT NULL REFERENCES namespaces (id) ON DELETE RESTRICT,
    position     INTEGER NOT NULL,
    PRIMARY KEY (cluster_id, namespace_id),
    UNIQUE (cluster_id, position)
) STRICT, WITHOUT ROWID;
CREATE INDEX cluster_namespaces_by_namespace ON cluster_namespaces (namespace_id);

CREATE TABLE cluster_rolebindings (
    cluster_id     TEXT NOT NULL REFERENCES clusters (id) ON DELETE CASCADE,
    rolebinding_id TEXT NOT NULL REFERENCES rolebindings (id) ON DELETE RESTRICT,
    position       INTEGER NOT NULL,
    PRIMARY KEY (cluster_id, rolebinding_id),
    UNIQUE (cluster_id, position)
) STRICT, WITHOUT ROWID;
CREATE INDEX cluster_rolebindings_by_rolebinding ON cluster_rolebindings (rolebinding_id);

-- Inventory revision: every flux-inputs write transaction (API or CLI) adds one before it
-- commits. The feed cache compares it to know whether what it holds is current. (Edits made
-- with other tools are caught by polling `PRAGMA data_version` instead; per-row triggers
-- would triple the cost of a bulk import.)
CREATE TABLE inventory_revision (
    id       INTEGER PRIMARY KEY CHECK (id = 1),
    revision INTEGER NOT NULL
) STRICT;
INSERT INTO inventory_revision (id, revision) VALUES (1, 0);

-- Poll liveness: when each cluster last fetched each feed, and with which client (Flux sends
-- `flux-operator/<version>`). Written in batches from memory, never once per poll; keyed by
-- DNS name because that is what Flux polls, and not part of the inventory revision.
CREATE TABLE cluster_polls (
    cluster_dns  TEXT NOT NULL,
    feed         TEXT NOT NULL CHECK (feed IN ('platform-components', 'namespaces', 'rolebindings')),
    last_poll_at INTEGER NOT NULL,
    user_agent   TEXT NOT NULL,
    PRIMARY KEY (cluster_dns, feed)
) STRICT, WITHOUT ROWID;

-- Audit trail: one entry per committed write, appended in the write's own transaction. The
-- revision is monotonic (AUTOINCREMENT never reuses a value, even after pruning) and is the
-- resource's ETag. `before` is NULL for a create, `after` NULL for a delete.
CREATE TABLE audit_log (
    revision    INTEGER PRIMARY KEY AUTOINCREMENT,
    at          INTEGER NOT NULL,
    actor       TEXT NOT NULL,
    method      TEXT NOT NULL CHECK (method IN ('POST', 'PUT', 'DELETE', 'REVERT', 'IMPORT')),
    kind        TEXT NOT NULL CHECK (kind IN ('clusters', 'platform_components', 'namespaces', 'rolebindings')),
    resource_id TEXT NOT NULL,
    before      TEXT CHECK (before IS NULL OR json_valid(before)),
    after       TEXT CHECK (after IS NULL OR json_valid(after))
);
CREATE INDEX audit_log_by_resource ON audit_log (kind, resource_id, revision);

-- API tokens beyond AUTH_TOKEN / CRUD_AUTH_TOKEN: read tokens scoped to one cluster's feeds
-- (scope_cluster_id) or to everything readable (NULL). Only the SHA-256 of a token is kept.
CREATE TABLE api_tokens (
    name             TEXT PRIMARY KEY NOT NULL
                     CHECK (length(name) BETWEEN 1 AND 63 AND name NOT GLOB '*[^a-z0-9._-]*'),
    token_sha256     TEXT NOT NULL UNIQUE CHECK (length(token_sha256) = 64),
    scope_cluster_id TEXT REFERENCES clusters (id) ON DELETE CASCADE,
    created_at       INTEGER NOT NULL,
    last_used_at     INTEGER
) STRICT;
CREATE INDEX api_tokens_by_cluster ON api_tokens (scope_cluster_id);
