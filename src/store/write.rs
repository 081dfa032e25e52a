//! The one write pipeline. Every change to the inventory — an API write, a revert, an import,
//! the first-start seed — runs through a `Pipeline` inside one write transaction:
//!
//! 1. `record` each resource write: the audit entry with the states before and after, and
//!    the clusters and feeds it can change (its scope);
//! 2. `finish`: bump the inventory revision once, then encode every feed in scope with the
//!    feed cache's encoder and run the checks on it (Flux's body limit, more than 100 inputs,
//!    the dependency closure), and for a dry run compare each feed with the state before the
//!    transaction, read from a second connection.
//!
//! The scope is walked in chunks of clusters, so memory stays flat however many clusters a
//! write touches. The caller commits or rolls back.

use std::collections::{BTreeMap, HashMap};

use poem_openapi::types::ToJSON;
use rusqlite::{Connection, Transaction, TransactionBehavior};

use super::assignments::{self, ComponentWrite, Listed};
use super::audit::{self, Change};
use super::feeds::{self, FLUX_DEFAULT_INPUT_LIMIT, FLUX_MAX_BODY_BYTES, Feed};
use super::resource::Layers;
use super::revision::bump_revision;
use super::sql::SqlResultExt;
use super::{Resource, Store, clusters, stored};
use crate::domain::blast::BlastRadius;
use crate::domain::diff::{self, FeedDigest};
use crate::domain::encode::{self, Catalog, Fragments, LoadedCluster};
use crate::domain::feed::{FeedChange, FeedCount, PREVIEW_PAGE, Preview, WindowClosed};
use crate::domain::model::{Cluster, Namespace, PlatformComponent, Rolebinding};
use crate::error::{AppError, Result};

/// The feeds of one cluster a write may change, one bit per `Feed::index`.
type FeedSet = u8;

const fn feed_bit(feed: Feed) -> FeedSet {
    1 << feed as u8
}

/// Clusters walked at a time when checking and comparing.
const CHUNK: usize = 1000;
/// Warnings a write answers with (as `Warning` headers) and logs; the rest are counted.
const MAX_WARNINGS: usize = 20;

/// What `finish` is asked to do besides the checks.
#[derive(Default)]
pub struct Finish<'a> {
    /// A missing dependency refuses the write instead of warning.
    pub strict_dependencies: bool,
    /// When a write needs `confirm` (the blast radius).
    pub guard: crate::domain::blast::Guard,
    /// `?confirm=`: the number of clusters the client agrees to shrink.
    pub confirm: Option<u64>,
    /// Compare with the state before the transaction, read from this connection (which
    /// must not see the transaction: another connection), listing changed clusters from
    /// this offset on.
    pub preview: Option<(&'a Connection, usize)>,
    /// Maintenance windows: refuse a change to the feed of a closed cluster unless confirmed.
    pub windows: Option<WindowGuard<'a>>,
    /// The feed cache, whose clusters the checks read where the write left them as they were.
    pub kept: Option<&'a super::feed_cache::FeedCache>,
}

/// What the window check needs: the state before the write, the instant, the confirmation.
pub struct WindowGuard<'a> {
    /// A connection that does not see the transaction (as `Finish::preview`'s).
    pub before: &'a Connection,
    /// Unix seconds the windows are judged at.
    pub at: i64,
    /// `?confirm_closed=`: the number of closed clusters the client agrees to change.
    pub confirm: Option<u64>,
}

/// What the checks found.
#[derive(Default)]
pub struct Finished {
    pub warnings: Vec<String>,
    pub preview: Option<Preview>,
    /// What the feed cache needs to move past the write.
    pub cache: CacheUpdate,
}

/// The clusters whose feeds a write may have changed, as the feed cache knows them.
#[derive(Default)]
pub struct CacheUpdate {
    /// The inventory revision the write committed.
    pub revision: i64,
    /// The catalog after the write.
    pub catalog: Option<Catalog>,
    /// A window was written: the rollout controller looks at its waiting clusters again.
    pub windows_changed: bool,
    /// DNS names the changed clusters were and are served at.
    pub changed: std::collections::HashSet<String>,
    /// A cluster was created, deleted or rewritten: the fleet list may have changed.
    pub fleet_changed: bool,
    /// Ids of the clusters whose own entries the write changed (not only their catalog).
    pub clusters: std::collections::HashSet<String>,
    /// Components whose catalog tag the write changed.
    pub retagged: std::collections::HashSet<String>,
    /// A component was added to or removed from the catalog.
    pub components_changed: bool,
}

/// One write transaction's way through the checks; see the module documentation.
pub struct Pipeline<'c> {
    conn: &'c Connection,
    /// `None`: not audited (the first-start seed: the file is the record of origin).
    change: Option<Change>,
    /// When its audit entries are stamped (Unix seconds).
    now: i64,
    scope: BTreeMap<String, FeedSet>,
    /// Clusters in scope whose cached entries the write changed (not only their catalog).
    reload: std::collections::HashSet<String>,
    revision: i64,
    /// The audit revision of the first recorded write.
    first_revision: Option<i64>,
    /// What the recorded cluster and overlay writes take away from Flux.
    blast: BlastRadius,
    layers: Layers,
    cache: CacheUpdate,
}

impl<'c> Pipeline<'c> {
    /// `conn` must be inside a write transaction the caller owns.
    /// `now`: the Unix seconds its audit entries are stamped with.
    pub fn new(conn: &'c Connection, change: Option<Change>, now: i64) -> Self {
        Pipeline {
            conn,
            change,
            now,
            scope: BTreeMap::new(),
            reload: Default::default(),
            revision: 0,
            first_revision: None,
            blast: BlastRadius::default(),
            layers: Layers::default(),
            cache: CacheUpdate::default(),
        }
    }

    /// `If-Match`: refuses the write when the resource moved past the revision the client saw.
    pub fn expect_revision<R: Resource>(&self, id: &str, expected: Option<i64>) -> Result<()> {
        let Some(expected) = expected else {
            return Ok(());
        };
        let current = audit::last_revision(self.conn, R::COLLECTION, id)?;
        if current != expected {
            return Err(AppError::PreconditionFailed(format!(
                "{} '{id}' is at revision {current}, not {expected} (If-Match): reload it and retry",
                R::KIND
            )));
        }
        Ok(())
    }

    /// One resource write: `op` runs between the states the audit entry records, and the
    /// clusters using the resource (or the cluster itself) join the scope.
    pub fn record<R: Resource, T>(
        &mut self,
        id: &str,
        op: impl FnOnce(&Connection) -> Result<T>,
    ) -> Result<T> {
        let before = match self.change {
            Some(_) => R::get(self.conn, id)?.and_then(|r| r.to_json()),
            None => None,
        };
        let value = op(self.conn)?;
        self.recorded::<R>(id, before)?;
        Ok(value)
    }

    /// A write to one resource that already happened (`before` is its earlier state): the
    /// audit entry and the scope, as `record` would have noted them.
    pub fn recorded<R: Resource>(
        &mut self,
        id: &str,
        before: Option<serde_json::Value>,
    ) -> Result<()> {
        let after = match self.change {
            Some(_) => R::get(self.conn, id)?.and_then(|r| r.to_json()),
            None => None,
        };
        self.audit::<R>(id, before, after)
    }

    /// `recorded`, for a write whose stored state is exactly `after` (a whole cluster as
    /// given): the audit entry is made without reading it back.
    pub fn recorded_as<R: Resource>(
        &mut self,
        id: &str,
        before: Option<serde_json::Value>,
        after: &R,
    ) -> Result<()> {
        let after = self.change.as_ref().and_then(|_| after.to_json());
        self.audit::<R>(id, before, after)
    }

    /// The scope of a write to `id`, and its audit entry (unless the pipeline is not audited).
    fn audit<R: Resource>(
        &mut self,
        id: &str,
        before: Option<serde_json::Value>,
        after: Option<serde_json::Value>,
    ) -> Result<()> {
        self.touch::<R>(id, before.as_ref(), after.as_ref())?;
        for state in [&before, &after].into_iter().flatten() {
            if let Some(dns) = R::served_at(state) {
                self.cache.changed.insert(dns.to_owned());
                self.cache.fleet_changed = true;
            }
        }
        if let Some(change) = &self.change
            && before != after
        {
            R::guard_write(self.conn, id, &change.actor)?;
        }
        for (cluster, shrunk) in R::shrinks(
            self.conn,
            &mut self.layers,
            id,
            before.as_ref(),
            after.as_ref(),
        )? {
            self.blast.add(&cluster, &shrunk);
        }
        if R::COLLECTION == <crate::domain::window::Window as Resource>::COLLECTION {
            self.cache.windows_changed = true;
        }
        if R::COLLECTION == <PlatformComponent as Resource>::COLLECTION {
            match (&before, &after) {
                (Some(before), Some(after)) => {
                    if before.get("oci_tag") != after.get("oci_tag") {
                        self.cache.retagged.insert(id.to_owned());
                    }
                }
                // Created, deleted, or not audited (the states are not known).
                _ => self.cache.components_changed = true,
            }
        }
        if let Some(change) = &self.change {
            self.revision = audit::append(
                self.conn,
                change,
                self.now,
                R::COLLECTION,
                id,
                before.as_ref(),
                after.as_ref(),
            )?;
            self.first_revision.get_or_insert(self.revision);
        }
        Ok(())
    }

    /// A write of one component's entries on many clusters that already happened: each
    /// changed cluster's platform-components feed joins the scope, and one audit entry
    /// records the component and every changed entry before and after.
    pub fn recorded_assignments(&mut self, write: ComponentWrite) -> Result<()> {
        if write.is_empty() {
            return Ok(());
        }
        let written = write.finish();
        for (cluster, removed) in &written.clusters {
            *self.scope.entry(cluster.clone()).or_default() |= feed_bit(Feed::PlatformComponents);
            self.reload.insert(cluster.clone());
            if let Some(removed) = removed {
                self.removal_shrinks(cluster, &written.component, removed)?;
            }
        }
        if let Some(change) = &self.change {
            self.revision = audit::append(
                self.conn,
                change,
                self.now,
                assignments::KIND,
                &written.component,
                Some(&written.before),
                Some(&written.after),
            )?;
            self.first_revision.get_or_insert(self.revision);
            let clusters: Vec<&str> = written.clusters.iter().map(|(c, _)| c.as_str()).collect();
            audit::touched(self.conn, self.revision, &clusters)?;
        }
        Ok(())
    }

    /// What removing `cluster`'s entry `was` of `component` took from its feed, judged on the
    /// whole served cluster as a cluster write is: the cluster now against it with the entry.
    fn removal_shrinks(&mut self, cluster: &str, component: &str, was: &Listed) -> Result<()> {
        let Some(now) = clusters::get(self.conn, cluster)? else {
            return Ok(());
        };
        // Where it stood in the list does not change what the feed holds.
        let mut then = now.clone();
        then.platform_components
            .push(crate::domain::model::ComponentRef {
                id: component.to_owned(),
                enabled: was.enabled,
                oci_tag: was.oci_tag.clone(),
                component_path: was.component_path.clone(),
            });
        let (then, now) = (then.to_json(), now.to_json());
        for (cluster, shrunk) in Cluster::shrinks(
            self.conn,
            &mut self.layers,
            cluster,
            then.as_ref(),
            now.as_ref(),
        )? {
            self.blast.add(&cluster, &shrunk);
        }
        Ok(())
    }

    fn touch<R: Resource>(
        &mut self,
        id: &str,
        before: Option<&serde_json::Value>,
        after: Option<&serde_json::Value>,
    ) -> Result<()> {
        let feeds = R::feeds_of(before, after)
            .iter()
            .fold(0, |set, feed| set | feed_bit(*feed));
        if feeds == 0 {
            return Ok(());
        }
        let mut clusters = R::affected_clusters(self.conn, id)?;
        if let Some(before) = before {
            clusters.extend(R::affected_before(self.conn, before)?);
        }
        for cluster in clusters {
            if R::CHANGES_CLUSTER_ENTRIES {
                self.reload.insert(cluster.clone());
            }
            *self.scope.entry(cluster).or_default() |= feeds;
        }
        Ok(())
    }

    /// The transaction's connection, for reads between recorded writes.
    pub fn conn(&self) -> &Connection {
        self.conn
    }

    /// The audit revision of the last recorded write (the resource's new ETag).
    pub fn revision(&self) -> i64 {
        self.revision
    }

    /// Clusters whose feeds the recorded writes may change.
    pub fn scope_len(&self) -> usize {
        self.scope.len()
    }

    /// Bumps the inventory revision and checks every feed in scope; see `Finish`.
    pub fn finish(mut self, options: Finish<'_>) -> Result<Finished> {
        self.blast.limit(options.guard);
        // A dry run reports what a real write would meet; a real write is refused here,
        // before the checks walk the fleet.
        let refusal = self.blast.check(options.confirm);
        if options.preview.is_none() {
            refusal.map_err(AppError::BlastRadius)?;
        }
        let before_revision = super::revision::revision(self.conn)?;
        bump_revision(self.conn)?;
        self.cache.revision = super::revision::revision(self.conn)?;
        let after_catalog = feeds::load_catalog(self.conn)?;
        let kept = options
            .kept
            .and_then(|cache| cache.kept_at(before_revision, &after_catalog));
        // The clusters in scope a window closes now, judged on their states before and after
        // the write (new labels must not slip a cluster out of a freeze).
        let closed = match &options.windows {
            Some(guard) => closed_in_scope(self.conn, guard, &self.scope)?,
            None => HashMap::new(),
        };
        let before_conn = options.preview.map(|(conn, _)| conn).or_else(|| {
            (!closed.is_empty()).then(|| options.windows.as_ref().map(|g| g.before))?
        });
        let before_catalog = match before_conn {
            Some(before) => Some(feeds::load_catalog(before)?),
            None => None,
        };
        let mut closed_changed = WindowClosed::default();
        let mut finished = Finished::default();
        let mut tally = Tally::new(options.preview.map_or(0, |(_, offset)| offset));
        let names = diff::names(before_catalog.iter().chain([&after_catalog]));
        let ids: Vec<&String> = self.scope.keys().collect();
        for chunk in ids.chunks(CHUNK) {
            let union = chunk.iter().fold(0, |set, id| set | self.scope[*id]);
            let wanted = Feed::ALL.map(|feed| union & feed_bit(feed) != 0);
            let mut before = HashMap::new();
            // A dry run compares every cluster; a real write the closed ones only.
            let compared: Vec<&str> = chunk
                .iter()
                .map(|id| id.as_str())
                .filter(|id| options.preview.is_some() || closed.contains_key(*id))
                .collect();
            if let (Some(conn), Some(catalog), false) =
                (before_conn, &before_catalog, compared.is_empty())
            {
                clusters::set_scope(conn, compared.iter().copied())?;
                clusters::for_each_in_scope(conn, catalog, wanted, |cluster| {
                    let feeds = self.scope[&cluster.id];
                    before.insert(cluster.id.clone(), digests(cluster, catalog, feeds));
                    Ok(())
                })?;
            }
            clusters::set_scope(self.conn, chunk.iter().map(|id| id.as_str()))?;
            let mut changed = Vec::new();
            let mut visit = |id: String,
                             dns: String,
                             refs: &encode::ClusterRefs,
                             fragments: &Fragments|
             -> Result<()> {
                let feeds = self.scope[&id];
                if self.reload.contains(&id) {
                    self.cache.changed.insert(dns.clone());
                }
                check_feeds(
                    &id,
                    &dns,
                    refs,
                    &after_catalog,
                    fragments,
                    feeds,
                    &mut finished.warnings,
                )
                .map_err(AppError::Validation)?;
                if feeds & feed_bit(Feed::PlatformComponents) != 0 {
                    let missing = refs.missing_dependencies(&after_catalog);
                    if !missing.is_empty() {
                        let problem = encode::missing_dependencies_message(&id, &missing);
                        if options.strict_dependencies {
                            return Err(AppError::Validation(problem));
                        }
                        finished.warnings.push(problem);
                    }
                }
                let closing = closed.get(&id);
                if options.preview.is_some() || closing.is_some() {
                    let mut scratch = Vec::new();
                    let after: [Option<FeedDigest>; 3] = Feed::ALL.map(|feed| {
                        (feeds & feed_bit(feed) != 0).then(|| {
                            diff::digest(refs, &after_catalog, fragments, feed, &mut scratch)
                        })
                    });
                    // A cluster the write creates has nothing running to disturb yet.
                    if let (Some(windows), Some((_, previous))) = (closing, before.get(&id))
                        && differs(previous, &after)
                    {
                        closed_changed.add(&id, windows);
                    }
                    if options.preview.is_some() {
                        let (_, previous) = before.remove(&id).unwrap_or_default();
                        changed.push((id, dns, previous, after));
                    } else {
                        before.remove(&id);
                    }
                }
                Ok(())
            };
            // The clusters this write left as they were are read from the feed cache when it
            // holds them at the revision before the write; the others from the database.
            let mut unkept: Vec<String> = Vec::new();
            if let Some(kept) = &kept {
                for (id, dns) in clusters::dns_in_scope(self.conn)? {
                    if self.reload.contains(&id) {
                        unkept.push(id);
                        continue;
                    }
                    let visited = kept.with(&dns, |refs, fragments| {
                        visit(id.clone(), dns.clone(), refs, fragments)
                    });
                    match visited {
                        Some(result) => result?,
                        None => unkept.push(id),
                    }
                }
                clusters::set_scope(self.conn, unkept.iter().map(String::as_str))?;
            }
            if kept.is_none() || !unkept.is_empty() {
                let mut fragments = Fragments::default();
                clusters::for_each_in_scope(self.conn, &after_catalog, wanted, |cluster| {
                    let (id, dns) = (cluster.id.clone(), cluster.cluster_dns.clone());
                    let refs = cluster.intern(&mut fragments);
                    visit(id, dns, &refs, &fragments)
                })?;
            }
            // Clusters that existed only before the write (deleted by it).
            for (id, (dns, previous)) in before {
                if let Some(windows) = closed.get(&id) {
                    closed_changed.add(&id, windows);
                }
                if options.preview.is_some() {
                    changed.push((id, dns, previous, Default::default()));
                }
            }
            changed.sort_by(|a, b| a.0.cmp(&b.0));
            for (_, dns, previous, after) in changed {
                tally.add(&dns, previous, after, &names);
            }
        }
        let total = finished.warnings.len();
        if total > MAX_WARNINGS {
            finished.warnings.truncate(MAX_WARNINGS);
            finished.warnings.push(format!(
                "... and {} more warnings of this kind (`flux-inputs check` lists them all)",
                total - MAX_WARNINGS
            ));
        }
        for warning in &finished.warnings {
            tracing::warn!(%warning, "write accepted with a warning");
        }
        if options.preview.is_some() {
            let mut preview = tally.into_preview();
            preview.blast_radius = self.blast;
            let confirm = options.windows.as_ref().and_then(|g| g.confirm);
            closed_changed.refused = closed_changed.check(confirm).is_err();
            preview.window_closed = closed_changed;
            finished.preview = Some(preview);
        } else if closed_changed.clusters > 0 {
            let confirm = options.windows.as_ref().and_then(|g| g.confirm);
            closed_changed
                .check(confirm)
                .map_err(AppError::WindowClosed)?;
            self.record_override(&closed_changed)?;
        }
        self.cache.catalog = Some(after_catalog);
        self.cache.clusters = self.reload;
        finished.cache = self.cache;
        Ok(finished)
    }
}

impl Pipeline<'_> {
    /// Marks this write's audit entries as overriding the windows of the closed clusters
    /// it changed.
    fn record_override(&self, closed: &WindowClosed) -> Result<()> {
        let Some(first) = self.first_revision else {
            return Ok(());
        };
        let record = serde_json::json!({
            "clusters": closed.clusters,
            "listed": closed.listed.iter().map(|c| serde_json::json!({
                "cluster_id": c.cluster_id, "windows": c.windows
            })).collect::<Vec<_>>(),
        });
        self.conn
            .prepare_cached(
                "UPDATE audit_log SET window_override = ?3 WHERE revision BETWEEN ?1 AND ?2",
            )
            .db()?
            .execute(rusqlite::params![first, self.revision, record.to_string()])
            .db()?;
        Ok(())
    }
}

/// The clusters of `scope` a window closes at the guard's instant, as they were before the
/// write or are after it, each with the windows that close it.
fn closed_in_scope(
    conn: &Connection,
    guard: &WindowGuard<'_>,
    scope: &BTreeMap<String, FeedSet>,
) -> Result<HashMap<String, Vec<String>>> {
    if scope.is_empty() {
        return Ok(HashMap::new());
    }
    let ids: std::collections::HashSet<&str> = scope.keys().map(String::as_str).collect();
    let mut closed = super::windows::closed(conn, guard.at, Some(&ids))?;
    for (cluster, windows) in super::windows::closed(guard.before, guard.at, Some(&ids))? {
        let known = closed.entry(cluster).or_default();
        for window in windows {
            if !known.contains(&window) {
                known.push(window);
            }
        }
    }
    Ok(closed)
}

/// Whether any feed of a cluster differs between two digests of it.
fn differs(before: &[Option<FeedDigest>; 3], after: &[Option<FeedDigest>; 3]) -> bool {
    before.iter().zip(after).any(|(old, new)| {
        !diff::compare(
            old.as_deref().unwrap_or_default(),
            new.as_deref().unwrap_or_default(),
        )
        .is_empty()
    })
}

/// A cluster's feeds in scope, digested with names, keyed for the comparison.
fn digests(
    cluster: LoadedCluster,
    catalog: &Catalog,
    feeds: FeedSet,
) -> (String, [Option<FeedDigest>; 3]) {
    let dns = cluster.cluster_dns.clone();
    let mut fragments = Fragments::default();
    let refs = cluster.intern(&mut fragments);
    let mut scratch = Vec::new();
    let digests = Feed::ALL.map(|feed| {
        (feeds & feed_bit(feed) != 0)
            .then(|| diff::digest(&refs, catalog, &fragments, feed, &mut scratch))
    });
    (dns, digests)
}

/// Flux's body limit (the problem is returned) and default input limit (warned) on each
/// feed in scope.
fn check_feeds(
    id: &str,
    dns: &str,
    refs: &encode::ClusterRefs,
    catalog: &Catalog,
    fragments: &Fragments,
    feeds: FeedSet,
    warnings: &mut Vec<String>,
) -> std::result::Result<(), String> {
    for feed in Feed::ALL {
        if feeds & feed_bit(feed) == 0 {
            continue;
        }
        let (bytes, inputs) = refs.encoded_len(catalog, fragments, feed);
        let path = feed.path(dns);
        if bytes > FLUX_MAX_BODY_BYTES {
            return Err(format!(
                "cluster '{id}': GET {path} would be {bytes} bytes, over Flux's limit of {FLUX_MAX_BODY_BYTES}"
            ));
        }
        if inputs > FLUX_DEFAULT_INPUT_LIMIT {
            warnings.push(format!(
                "cluster '{id}': GET {path} has {inputs} inputs; Flux keeps only the first \
                 {FLUX_DEFAULT_INPUT_LIMIT} unless the provider sets spec.filter.limit"
            ));
        }
    }
    Ok(())
}

/// What `flux-inputs check` finds on every cluster: feeds over Flux's limit (problems),
/// more than 100 inputs and missing dependencies (warnings).
#[derive(Debug, Default)]
pub struct FleetCheck {
    pub clusters: usize,
    pub problems: Vec<String>,
    pub warnings: Vec<String>,
}

/// Runs the write checks over every cluster, collecting instead of refusing.
pub fn check_fleet(conn: &Connection) -> Result<FleetCheck> {
    let catalog = feeds::load_catalog(conn)?;
    let ids: Vec<String> = conn
        .prepare("SELECT id FROM clusters ORDER BY id")
        .db()?
        .query_map([], |row| row.get(0))
        .db()?
        .collect::<rusqlite::Result<_>>()
        .db()?;
    let mut report = FleetCheck::default();
    for chunk in ids.chunks(CHUNK) {
        clusters::set_scope(conn, chunk.iter().map(String::as_str))?;
        clusters::for_each_in_scope(conn, &catalog, [true; 3], |cluster| {
            let (id, dns) = (cluster.id.clone(), cluster.cluster_dns.clone());
            let mut fragments = Fragments::default();
            let refs = cluster.intern(&mut fragments);
            let all = Feed::ALL.iter().fold(0, |set, feed| set | feed_bit(*feed));
            if let Err(problem) = check_feeds(
                &id,
                &dns,
                &refs,
                &catalog,
                &fragments,
                all,
                &mut report.warnings,
            ) {
                report.problems.push(problem);
            }
            let missing = refs.missing_dependencies(&catalog);
            if !missing.is_empty() {
                report
                    .warnings
                    .push(encode::missing_dependencies_message(&id, &missing));
            }
            report.clusters += 1;
            Ok(())
        })?;
    }
    Ok(report)
}

/// Counts over every changed cluster, and the listing of one page of them.
struct Tally {
    offset: usize,
    clusters_changed: usize,
    feeds: [FeedCount; 3],
    changes: Vec<FeedChange>,
}

impl Tally {
    fn new(offset: usize) -> Self {
        Tally {
            offset,
            clusters_changed: 0,
            feeds: Feed::ALL.map(|feed| FeedCount {
                feed: feed.segment().to_owned(),
                ..FeedCount::default()
            }),
            changes: Vec::new(),
        }
    }

    fn add(
        &mut self,
        dns: &str,
        before: [Option<FeedDigest>; 3],
        after: [Option<FeedDigest>; 3],
        names: &HashMap<u64, &str>,
    ) {
        let mut listed = Vec::new();
        for feed in Feed::ALL {
            let (old, new) = (&before[feed.index()], &after[feed.index()]);
            if old.is_none() && new.is_none() {
                continue;
            }
            let (old, new) = (
                old.as_deref().unwrap_or_default(),
                new.as_deref().unwrap_or_default(),
            );
            let delta = diff::compare(old, new);
            // A disabled input's JSON changed too: `is_empty` covers it.
            if delta.is_empty() {
                continue;
            }
            let count = &mut self.feeds[feed.index()];
            count.clusters += 1;
            count.added += delta.added.len() as u64;
            count.removed += delta.removed.len() as u64;
            count.changed += delta.changed.len() as u64;
            count.disabled += delta.disabled.len() as u64;
            count.emptied += u64::from(!old.is_empty() && new.is_empty());
            listed.push(diff::feed_change(dns, feed, (old, new), &delta, names));
        }
        if listed.is_empty() {
            return;
        }
        let position = self.clusters_changed;
        self.clusters_changed += 1;
        if position >= self.offset && position < self.offset + PREVIEW_PAGE {
            self.changes.extend(listed);
        }
    }

    fn into_preview(self) -> Preview {
        let end = self.offset + PREVIEW_PAGE;
        let truncated = self.clusters_changed > end;
        Preview {
            clusters_changed: self.clusters_changed as u64,
            feeds: self.feeds.into(),
            changes: self.changes,
            truncated,
            next_changes_offset: truncated.then_some(end as u64),
            window_closed: WindowClosed::default(),
            blast_radius: BlastRadius::default(),
        }
    }
}

/// What a write did, or would do (dry run).
#[derive(Debug)]
pub struct Written<R> {
    /// The resource as stored (as deleted, for a delete).
    pub value: R,
    /// Accepted, but worth telling the client (sent as `Warning` headers).
    pub warnings: Vec<String>,
    /// For a dry run: how the feeds would change (bounded).
    pub preview: Option<Preview>,
    /// The audit revision of this write (the resource's new ETag).
    pub revision: i64,
}

/// How a write was asked for.
#[derive(Debug, Clone)]
pub struct WriteRequest {
    /// Run every check, report, and store nothing.
    pub dry_run: bool,
    /// For a dry run: list changed clusters from this offset on.
    pub changes_offset: usize,
    /// Who and how, for the audit trail.
    pub change: Change,
    /// `If-Match`: the revision the client last saw.
    pub if_match: Option<i64>,
    /// `?confirm=`: the number of clusters the client agrees to take inputs from.
    pub confirm: Option<u64>,
    /// `?confirm_closed=`: the number of clusters closed by a maintenance window whose feeds
    /// the client agrees to change.
    pub confirm_closed: Option<u64>,
    /// Maintenance windows hold this write (all but a rollout's own, which waits for
    /// windows cluster by cluster: `waiting_window`).
    pub held_by_windows: bool,
}

impl WriteRequest {
    pub fn new(change: Change) -> Self {
        WriteRequest {
            dry_run: false,
            changes_offset: 0,
            change,
            if_match: None,
            confirm: None,
            confirm_closed: None,
            held_by_windows: true,
        }
    }
}

/// What a revert did.
#[derive(Debug)]
pub struct Reverted {
    pub kind: &'static str,
    pub id: String,
    pub revision: i64,
    pub warnings: Vec<String>,
    /// A dry run: what the revert would change; nothing was stored.
    pub preview: Option<Preview>,
}

/// How a revert is asked for: the confirmations it carries, or a dry run.
#[derive(Clone, Copy, Debug, Default)]
pub struct RevertOptions {
    pub confirm: Option<u64>,
    pub confirm_closed: Option<u64>,
    pub dry_run: bool,
}

/// Runs `f` in an IMMEDIATE transaction on `conn`; commits on `Ok`, rolls back on `Err`.
pub fn write_transaction<T>(
    conn: &mut Connection,
    f: impl FnOnce(&Transaction) -> Result<T>,
) -> Result<T> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .db()?;
    let value = f(&tx)?;
    tx.commit().db()?;
    Ok(value)
}

impl Store {
    /// Runs `f` on the writer connection, after every write queued before it (however long
    /// they take: writes of this process are ordered by the queue, never by SQLite's busy
    /// timeout). Another process's lock is waited for up to the busy timeout.
    pub(super) async fn on_writer<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Store, &mut Connection) -> Result<T> + Send + 'static,
    {
        self.on_writer_waiting(super::pool::BUSY_TIMEOUT, f).await
    }

    /// `on_writer`, waiting at most `lock_wait` for another process's lock.
    async fn on_writer_waiting<T, F>(&self, lock_wait: std::time::Duration, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Store, &mut Connection) -> Result<T> + Send + 'static,
    {
        let mut writer = self.writer.clone().lock_owned().await;
        let store = self.clone();
        self.blocking(move || {
            let Some(conn) = writer.as_mut() else {
                let refusal = store.replica().map(|copy| copy.refusal());
                return Err(AppError::Unavailable(
                    refusal.unwrap_or_else(|| "this server does not write".into()),
                ));
            };
            store.ensure_file()?;
            conn.busy_timeout(lock_wait).db()?;
            f(&store, conn)
        })
        .await
    }

    /// Runs `f` in a write transaction that is not an inventory change (poll times, tokens,
    /// pruning), committed when `f` returns `Ok`.
    pub async fn write<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Transaction) -> Result<T> + Send + 'static,
    {
        self.on_writer(move |_, conn| write_transaction(conn, f))
            .await
    }

    /// Writes the poll times `which` chooses and the token last-used times noted since the
    /// last flush, in one transaction.
    pub async fn flush_usage(&self, which: super::polls::Flush) -> Result<usize> {
        let polls = self.polls.clone();
        let tokens = self.tokens.clone();
        self.write(move |tx| {
            let flushed = polls.flush(tx, which)?;
            tokens.flush_last_used(tx)?;
            Ok(flushed)
        })
        .await
    }

    /// Saves one received event; resolves once the transaction holding it has committed
    /// (group commit: events arriving together share a transaction and its fsync).
    pub async fn record_report(&self, report: super::reports::Report) -> Result<()> {
        let ticket = self.reports.push(report)?;
        if ticket.start_committer {
            tokio::spawn(self.clone().commit_reports());
        }
        ticket.outcome.await.unwrap_or_else(|_| {
            Err(AppError::Unavailable(
                "the server stopped before the event was saved; retry".into(),
            ))
        })
    }

    /// Drains the inbox, a batch per transaction, until nothing waits. A batch that fails is
    /// answered with the failure (the clients retry); nothing is kept for a later attempt.
    /// A batch waits at most `EVENT_LOCK_WAIT` for another process's lock, so an inventory
    /// write queued behind it is not held for two busy timeouts.
    async fn commit_reports(self) {
        const EVENT_LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(1);
        loop {
            let committed = self
                .on_writer_waiting(EVENT_LOCK_WAIT, |store, conn| {
                    let batch = store.reports.take();
                    if batch.is_empty() {
                        return Ok(());
                    }
                    let outcome = write_transaction(conn, |tx| {
                        let applied = super::reports::apply(tx, batch.iter().map(|q| &q.report))?;
                        Ok(applied)
                    });
                    match outcome {
                        Ok(applied) => {
                            store
                                .summaries()
                                .reported(batch.iter().map(|q| q.report.cluster_dns.as_str()));
                            store.reports.count(&batch);
                            batch.into_iter().for_each(|q| q.answer(Ok(())));
                            // New reports may pass or fail a rollout's gate.
                            if applied > 0 {
                                store.rollouts_wake.notify_one();
                            }
                        }
                        Err(err) => {
                            tracing::warn!(error = %err, events = batch.len(), "cannot save received events");
                            let message = match err {
                                AppError::Unavailable(message) => message,
                                _ => "the event could not be saved; retry".to_owned(),
                            };
                            batch.into_iter().for_each(|q| {
                                q.answer(Err(AppError::Unavailable(message.clone())))
                            });
                        }
                    }
                    Ok(())
                })
                .await;
            if let Err(err) = committed {
                // The writer could not be reached at all (a replica, the file replaced).
                let message = err.to_string();
                for queued in self.reports.take() {
                    queued.answer(Err(AppError::Unavailable(message.clone())));
                }
            }
            if !self.reports.keep_committing() {
                return;
            }
        }
    }

    /// Runs `op` as one inventory write through the pipeline: a write transaction on the
    /// writer, the audit entries `op` records, the checks, and for a dry run the preview
    /// (read from a pooled connection, which sees the state before the transaction) and a
    /// rollback. A real write commits, then drops the caches before the answer goes out.
    pub async fn inventory_write<T, F>(&self, request: WriteRequest, op: F) -> Result<Written<T>>
    where
        T: Send + 'static,
        F: FnOnce(&mut Pipeline<'_>) -> Result<T> + Send + 'static,
    {
        let settings = self.settings;
        self.on_writer(move |store, conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .db()?;
            let mut pipeline =
                Pipeline::new(&tx, Some(request.change.clone()), store.clock().now());
            let value = op(&mut pipeline)?;
            let revision = pipeline.revision();
            let windowed = request.held_by_windows && super::windows::any(&tx)?;
            let before = if request.dry_run || windowed {
                Some(store.connection()?)
            } else {
                None
            };
            let reader = match &before {
                Some(conn) => Some(conn.unchecked_transaction().db()?),
                None => None,
            };
            let mut finished = pipeline.finish(Finish {
                strict_dependencies: settings.strict_dependencies,
                guard: settings.guard,
                confirm: request.confirm,
                preview: reader
                    .as_deref()
                    .filter(|_| request.dry_run)
                    .map(|conn| (conn, request.changes_offset)),
                windows: reader
                    .as_deref()
                    .filter(|_| windowed)
                    .map(|before| WindowGuard {
                        before,
                        at: store.clock().now(),
                        confirm: request.confirm_closed,
                    }),
                kept: Some(&store.cache),
            })?;
            if request.dry_run {
                drop(reader);
                tx.rollback().db()?;
            } else {
                tx.commit().db()?;
                // Before the answer goes out, so the client's next read sees its write.
                let update = std::mem::take(&mut finished.cache);
                store.summaries().written(
                    update.clusters,
                    update.retagged,
                    update.components_changed,
                );
                match update.catalog {
                    Some(catalog) => store.cache.carry_over(
                        update.revision,
                        catalog,
                        &update.changed,
                        update.fleet_changed,
                    ),
                    None => store.cache.invalidate(),
                }
                if update.windows_changed {
                    store.wake_rollouts();
                }
                // A cluster's DNS name may have changed under a scoped token.
                store.tokens.invalidate();
                store.last_write.store(
                    store.clock().now_u64(),
                    std::sync::atomic::Ordering::Relaxed,
                );
            }
            Ok(Written {
                value,
                warnings: finished.warnings,
                preview: finished.preview,
                revision,
            })
        })
        .await
    }

    /// Stores a new resource and returns it as stored.
    pub async fn create<R: Resource>(&self, value: R, request: WriteRequest) -> Result<Written<R>> {
        value.validate()?;
        self.inventory_write(request, move |pipeline| {
            let id = value.id().to_owned();
            pipeline.record::<R, _>(&id, |tx| R::insert(tx, &value))?;
            stored(pipeline.conn(), &id)
        })
        .await
    }

    /// Stores `value` whole: creates it, or replaces the resource with its id (`apply -f`).
    pub async fn create_or_replace<R: Resource>(
        &self,
        value: R,
        request: WriteRequest,
    ) -> Result<Written<R>> {
        value.validate()?;
        self.inventory_write(request, move |pipeline| {
            let id = value.id().to_owned();
            pipeline.record::<R, _>(&id, |tx| match R::get(tx, &id)? {
                Some(_) => R::update(tx, &value),
                None => R::insert(tx, &value),
            })?;
            stored(pipeline.conn(), &id)
        })
        .await
    }

    /// Applies a partial update: present fields replace, omitted fields keep their values.
    pub async fn update<R: Resource>(
        &self,
        id: String,
        update: R::Update,
        request: WriteRequest,
    ) -> Result<Written<R>> {
        if let Some(body_id) = R::update_id(&update).filter(|body_id| *body_id != id) {
            return Err(AppError::BadRequest(format!(
                "body id '{body_id}' differs from the path id '{id}'; ids cannot be changed"
            )));
        }
        let if_match = request.if_match;
        self.inventory_write(request, move |pipeline| {
            pipeline.expect_revision::<R>(&id, if_match)?;
            pipeline.record::<R, _>(&id, |tx| {
                let updated = stored::<R>(tx, &id)?.apply(update);
                updated.validate()?;
                R::update(tx, &updated)
            })?;
            stored(pipeline.conn(), &id)
        })
        .await
    }

    /// Deletes a resource and returns what was deleted.
    pub async fn delete<R: Resource>(
        &self,
        id: String,
        request: WriteRequest,
    ) -> Result<Written<R>> {
        let if_match = request.if_match;
        self.inventory_write(request, move |pipeline| {
            pipeline.expect_revision::<R>(&id, if_match)?;
            pipeline.record::<R, _>(&id, |tx| R::delete(tx, &id))
        })
        .await
    }

    /// Puts a resource back to its state before an audit revision: deletes what that
    /// revision created, restores what it changed or deleted. A new, audited write with
    /// every check; returns the kind and id it touched and the revision of the revert.
    pub async fn revert(
        &self,
        revision: i64,
        actor: String,
        options: RevertOptions,
    ) -> Result<Reverted> {
        let entry = self.read(move |conn| audit::get(conn, revision)).await?;
        let request = WriteRequest {
            confirm: options.confirm,
            confirm_closed: options.confirm_closed,
            dry_run: options.dry_run,
            ..WriteRequest::new(Change {
                actor,
                method: "REVERT",
            })
        };
        match entry.kind.as_str() {
            "clusters" => self.revert_to::<Cluster>(entry, request).await,
            assignments::KIND => self.revert_assignments(entry, request).await,
            "platform_components" => self.revert_to::<PlatformComponent>(entry, request).await,
            "namespaces" => self.revert_to::<Namespace>(entry, request).await,
            "rolebindings" => self.revert_to::<Rolebinding>(entry, request).await,
            "overlays" => {
                self.revert_to::<crate::domain::overlay::Overlay>(entry, request)
                    .await
            }
            "windows" => {
                self.revert_to::<crate::domain::window::Window>(entry, request)
                    .await
            }
            super::tokens::TOKENS => Err(AppError::Validation(format!(
                "audit entry {revision} is a token operation; token values are never stored, so \
                 it cannot be undone: create or revoke the token instead"
            ))),
            other => Err(AppError::Internal(format!(
                "audit entry {revision} has unknown kind '{other}'"
            ))),
        }
    }

    /// Puts every cluster's entry of the component back as it was before the entry; a
    /// cluster deleted since is left out, with a warning.
    async fn revert_assignments(
        &self,
        entry: audit::Entry,
        request: WriteRequest,
    ) -> Result<Reverted> {
        let targets = assignments::parse_side(entry.before.as_ref())?;
        let component = entry.resource_id.clone();
        let key = component.clone();
        let mut written = self
            .inventory_write(request, move |pipeline| {
                if targets.iter().any(|(_, target)| target.is_some())
                    && super::components::get(pipeline.conn(), &key)?.is_none()
                {
                    return Err(AppError::Conflict(format!(
                        "platform component '{key}' is gone: its entries cannot come back"
                    )));
                }
                let mut write = ComponentWrite::new(&key);
                let mut gone = Vec::new();
                for (cluster, target) in targets {
                    if !write.set(pipeline.conn(), &cluster, |_| Ok(target))? {
                        gone.push(cluster);
                    }
                }
                if write.is_empty() {
                    return Err(AppError::Conflict(format!(
                        "every cluster's entry of '{key}' is as it was before this write \
                         (or its cluster is gone): there is nothing to undo"
                    )));
                }
                pipeline.recorded_assignments(write)?;
                Ok(gone)
            })
            .await?;
        if !written.value.is_empty() {
            let shown: Vec<&str> = written.value.iter().take(5).map(String::as_str).collect();
            written.warnings.push(format!(
                "{} cluster(s) of the entry are gone and were left out: {}{}",
                written.value.len(),
                shown.join(", "),
                if written.value.len() > shown.len() {
                    ", …"
                } else {
                    ""
                }
            ));
        }
        Ok(Reverted {
            kind: assignments::KIND,
            id: component,
            revision: written.revision,
            warnings: written.warnings,
            preview: written.preview,
        })
    }

    async fn revert_to<R: Resource>(
        &self,
        entry: audit::Entry,
        request: WriteRequest,
    ) -> Result<Reverted> {
        let target: Option<R> = match &entry.before {
            Some(before) => Some(R::parse_from_json(Some(before.clone())).map_err(|err| {
                AppError::Internal(format!(
                    "audit entry {} holds an unreadable state: {}",
                    entry.revision,
                    err.into_message()
                ))
            })?),
            None => None,
        };
        let id = entry.resource_id.clone();
        let key = id.clone();
        let written = self
            .inventory_write(request, move |pipeline| {
                pipeline.record::<R, _>(&key, |tx| match (target, R::get(tx, &key)?) {
                    (Some(target), Some(_)) => {
                        target.validate()?;
                        R::update(tx, &target)
                    }
                    (Some(target), None) => {
                        target.validate()?;
                        R::insert(tx, &target)
                    }
                    (None, Some(_)) => R::delete(tx, &key).map(drop),
                    (None, None) => Err(AppError::Conflict(format!(
                        "{} '{key}' does not exist; there is nothing to undo",
                        R::KIND
                    ))),
                })
            })
            .await?;
        Ok(Reverted {
            kind: R::COLLECTION,
            id,
            revision: written.revision,
            warnings: written.warnings,
            preview: written.preview,
        })
    }
}
