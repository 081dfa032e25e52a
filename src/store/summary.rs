//! The fleet summary: per component and environment, clusters per state, and the stale
//! clusters (`/status/fleet`, `/metrics`, `flux-inputs status`).
//!
//! The whole fleet's summary is kept up to date rather than recomputed: at 100,000 clusters a
//! fresh one reads 3 million assignments (seconds), and neither a Prometheus scrape every
//! 15 s nor the first scrape after each write may cost that. Every cluster's states are kept
//! in memory as they would be were no cluster stale (staleness moves with the clock and the
//! polls, and is applied from the poll tracker each time). Writes and report commits name what
//! they changed — the clusters, the components whose catalog tag moved, the DNS names events
//! came from — and the next summary reads only those clusters again.
//!
//! Ordering: a writer names its changes after its commit and before its answer goes out; a
//! summary takes the names before it opens its read. A summary that takes a name therefore
//! sees the commit, and a commit whose name was not taken yet is read by the next summary.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

use rusqlite::Connection;

use super::Store;
use super::clusters;
use super::convergence::{Scope, for_each_component};
use super::polls::PollTracker;
use crate::domain::convergence::{ComponentSummary, EnvironmentCounts, FleetStatus, StateCounts};
use crate::domain::report::State;
use crate::error::Result;

/// Stale clusters listed by `/status/fleet` (the count covers all).
pub const STALE_LISTED: usize = 1000;

/// The fleet summary of `scope` (its clusters by DNS name or id), read afresh.
pub fn fleet_summary(
    conn: &Connection,
    scope: &Scope,
    polls: &PollTracker,
    now: u64,
) -> Result<FleetStatus> {
    let mut states = FleetStates::default();
    states.read(conn, scope)?;
    Ok(states.summary(polls, now).0)
}

/// The whole fleet's summary, brought up to date with what changed since the last one.
pub async fn whole_fleet_summary(store: &Store) -> Result<Arc<FleetStatus>> {
    let cache = store.summaries().clone();
    let polls = store.polls().clone();
    let now = store.clock().now_u64();
    store
        .read(move |conn| cache.summary(conn, &polls, now))
        .await
}

/// The whole fleet's kept states and summary, shared by every request.
#[derive(Clone, Default)]
pub struct SummaryCache(Arc<Inner>);

#[derive(Default)]
struct Inner {
    /// Named by writers since the states were last brought up to date (everything, until
    /// they are first read).
    changed: Mutex<Changed>,
    /// Held while the states are brought up to date: summaries asked for meanwhile wait for
    /// that one read instead of starting their own.
    kept: Mutex<Kept>,
}

/// What changed since the kept states were read.
struct Changed {
    /// Another process wrote, a component was added or removed: everything is read again.
    everything: bool,
    /// Clusters (by id) whose own entries changed.
    clusters: HashSet<String>,
    /// DNS names whose reports changed.
    reported: HashSet<String>,
    /// Components whose catalog tag changed: a new desired tag changes their state wherever
    /// a report speaks for them.
    retagged: HashSet<String>,
}

impl Default for Changed {
    fn default() -> Self {
        Changed::everything()
    }
}

impl Changed {
    /// Past this many clusters named, reading every cluster costs about as much as reading
    /// them, and the names stop growing.
    const MAX_NAMED: usize = 50_000;

    fn everything() -> Changed {
        Changed {
            everything: true,
            clusters: HashSet::new(),
            reported: HashSet::new(),
            retagged: HashSet::new(),
        }
    }

    fn nothing() -> Changed {
        Changed {
            everything: false,
            ..Changed::everything()
        }
    }

    /// Turns into "everything" past `MAX_NAMED` names; whether it is everything now (further
    /// names can be dropped: everything is read next anyway).
    fn becomes_everything(&mut self) -> bool {
        if self.clusters.len() + self.reported.len() > Changed::MAX_NAMED {
            *self = Changed::everything();
        }
        self.everything
    }

    fn is_empty(&self) -> bool {
        !self.everything
            && self.clusters.is_empty()
            && self.reported.is_empty()
            && self.retagged.is_empty()
    }
}

#[derive(Default)]
struct Kept {
    states: Option<FleetStates>,
    summary: Option<KeptSummary>,
}

struct KeptSummary {
    /// The poll tracker's revivals it was computed at: a stale cluster polling again changes it.
    revivals: u64,
    /// The clock second it was computed at, and the last second it holds.
    from: u64,
    until: u64,
    summary: Arc<FleetStatus>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl SummaryCache {
    /// Another process changed the database: the next summary reads everything.
    pub fn forget(&self) {
        lock(&self.0.changed).everything = true;
    }

    /// A committed inventory write changed these clusters' entries (ids) and the catalog tag
    /// of these components; `components_changed`: it added or removed a component.
    pub fn written(
        &self,
        clusters: impl IntoIterator<Item = String>,
        retagged: impl IntoIterator<Item = String>,
        components_changed: bool,
    ) {
        let mut changed = lock(&self.0.changed);
        changed.everything |= components_changed;
        if changed.becomes_everything() {
            return;
        }
        changed.clusters.extend(clusters);
        changed.retagged.extend(retagged);
    }

    /// Committed events changed the reports of the clusters served at these DNS names.
    pub fn reported<'a>(&self, cluster_dns: impl IntoIterator<Item = &'a str>) {
        let mut changed = lock(&self.0.changed);
        if changed.becomes_everything() {
            return;
        }
        for dns in cluster_dns {
            if !changed.reported.contains(dns) {
                changed.reported.insert(dns.to_owned());
            }
        }
    }

    fn summary(
        &self,
        conn: &Connection,
        polls: &PollTracker,
        now: u64,
    ) -> Result<Arc<FleetStatus>> {
        let revivals = polls.revivals();
        let mut kept = self.up_to_date(conn)?;
        if let Some(k) = &kept.summary
            && k.revivals == revivals
            && (k.from..=k.until).contains(&now)
        {
            return Ok(k.summary.clone());
        }
        let states = kept.states.as_ref().expect("brought up to date above");
        let (summary, until) = states.summary(polls, now);
        let summary = Arc::new(summary);
        kept.summary = Some(KeptSummary {
            revivals,
            from: now,
            until,
            summary: summary.clone(),
        });
        Ok(summary)
    }

    /// The kept states with every change named so far read. `conn` is in a read transaction
    /// that has read nothing yet (`Store::read`): its snapshot begins after the names are
    /// taken (see the module documentation).
    fn up_to_date(&self, conn: &Connection) -> Result<MutexGuard<'_, Kept>> {
        let mut kept = lock(&self.0.kept);
        let changed = std::mem::replace(&mut *lock(&self.0.changed), Changed::nothing());
        if changed.is_empty() && kept.states.is_some() {
            return Ok(kept);
        }
        kept.summary = None;
        if let Err(err) = kept.bring_up_to_date(conn, changed) {
            // What was taken is lost with the failed read: read everything next time.
            kept.states = None;
            return Err(err);
        }
        Ok(kept)
    }
}

/// One component's state on one cluster, as kept.
pub struct KeptState<'a> {
    pub cluster_id: &'a str,
    pub environment: &'a str,
    pub enabled: bool,
    /// At the instant asked for: `Stale` for an enabled component of a stale cluster.
    pub state: State,
    /// The chart revision of the latest decisive event.
    pub reported_revision: Option<&'a str>,
}

/// Folds `component`'s state on every cluster that has it, in cluster id order, over the
/// kept states brought up to date as the whole fleet's summary is: a view of one component
/// across 100,000 clusters without reading 100,000 clusters' reports.
pub async fn fold_component_states<A, F>(
    store: &Store,
    component: String,
    init: A,
    fold: F,
) -> Result<A>
where
    A: Send + 'static,
    F: FnMut(A, &KeptState<'_>) -> A + Send + 'static,
{
    let cache = store.summaries().clone();
    let polls = store.polls().clone();
    let now = store.clock().now_u64();
    store
        .read(move |conn| {
            let kept = cache.up_to_date(conn)?;
            let states = kept.states.as_ref().expect("brought up to date");
            Ok(states.fold_component(&component, &polls, now, init, fold))
        })
        .await
}

impl Kept {
    /// `conn` is in a read transaction that has read nothing yet (`Store::read`): its
    /// snapshot begins after `changed` was taken, and holds for the clusters and their rows.
    fn bring_up_to_date(&mut self, conn: &Connection, changed: Changed) -> Result<()> {
        let states = match &mut self.states {
            Some(states) if !changed.everything => states,
            _ => {
                let mut states = FleetStates::default();
                states.read(conn, &Scope::default())?;
                self.states = Some(states);
                return Ok(());
            }
        };
        let reread = states.changed_clusters(changed);
        // Past half the fleet, one ordered walk of everything is the cheaper read (and it
        // forgets the names of components and revisions no longer in use).
        if reread.len() > states.clusters.len() / 2 {
            *states = FleetStates::default();
            states.read(conn, &Scope::default())
        } else if reread.is_empty() {
            Ok(())
        } else {
            states.read(
                conn,
                &Scope {
                    clusters: Some(reread),
                    ..Scope::default()
                },
            )
        }
    }
}

/// Every cluster's component states were no cluster stale, with component ids,
/// environments and reported revisions interned: about 300 bytes per cluster of 30
/// components.
#[derive(Default)]
struct FleetStates {
    components: Interner,
    environments: Interner,
    revisions: Interner,
    clusters: BTreeMap<Box<str>, ClusterStates>,
}

struct ClusterStates {
    dns: Box<str>,
    environment: u32,
    rows: Box<[Row]>,
    /// (component, reported revision) of the rows with a reported revision: only clusters
    /// that report have any, and then for fewer components than they run.
    revisions: Box<[(u32, u32)]>,
}

/// One component's state on one cluster in 32 bits: the component's number (24 bits: the
/// catalog ids that appear on clusters number far fewer), its state were the cluster not
/// stale (an index in `State::ALL`), whether it is enabled and whether a report claims it.
#[derive(Clone, Copy)]
struct Row(u32);

impl Row {
    const ENABLED: u32 = 1 << 3;
    const CLAIMED: u32 = 1 << 4;

    fn new(component: u32, unless_stale: State, enabled: bool, claimed: bool) -> Row {
        let state = State::ALL
            .iter()
            .position(|s| *s == unless_stale)
            .unwrap_or(0) as u32;
        let flags = if enabled { Row::ENABLED } else { 0 } | if claimed { Row::CLAIMED } else { 0 };
        Row(component << 8 | flags | state)
    }

    fn component(self) -> u32 {
        self.0 >> 8
    }

    fn unless_stale(self) -> State {
        State::ALL[(self.0 & 0b111) as usize]
    }

    fn enabled(self) -> bool {
        self.0 & Row::ENABLED != 0
    }

    fn claimed(self) -> bool {
        self.0 & Row::CLAIMED != 0
    }
}

/// One cluster's rows while the walk passes it.
#[derive(Default)]
struct Gathered {
    environment: u32,
    rows: Vec<Row>,
    revisions: Vec<(u32, u32)>,
}

impl FleetStates {
    /// Reads the clusters of `scope` (every cluster, those with the scope's DNS name or ids),
    /// replacing what was kept of them; a listed cluster that no longer exists is dropped.
    fn read(&mut self, conn: &Connection, scope: &Scope) -> Result<()> {
        let listed = match &scope.clusters {
            Some(ids) => {
                for id in ids {
                    self.clusters.remove(id.as_str());
                }
                clusters::ids_and_dns_of(conn, ids)?
            }
            None => clusters::ids_and_dns(conn, scope.cluster_dns.as_deref())?,
        };
        for (id, dns) in listed {
            let states = ClusterStates {
                dns: dns.into(),
                environment: 0,
                rows: Box::default(),
                revisions: Box::default(),
            };
            self.clusters.insert(id.into(), states);
        }
        // The walk visits one cluster's rows together: each cluster's are gathered and
        // stored when the next cluster's begin.
        let clusters = &mut self.clusters;
        let mut store = |id: &str, gathered: &mut Gathered| {
            if let Some(states) = clusters.get_mut(id) {
                states.environment = gathered.environment;
                states.rows = gathered.rows.as_slice().into();
                states.revisions = gathered.revisions.as_slice().into();
            }
            gathered.rows.clear();
            gathered.revisions.clear();
        };
        let (mut current, mut gathered) = (String::new(), Gathered::default());
        // The clock does not matter: the states are kept as if no cluster were stale.
        for_each_component(conn, scope, &PollTracker::default(), 0, |row| {
            if row.cluster_id != current {
                store(&current, &mut gathered);
                row.cluster_id.clone_into(&mut current);
                gathered.environment = self.environments.intern(row.environment);
            }
            let component = self.components.intern(row.component);
            if let Some(revision) = row.reported_revision {
                let revision = self.revisions.intern(revision);
                gathered.revisions.push((component, revision));
            }
            let kept = Row::new(component, row.unless_stale, row.enabled, row.claimed);
            gathered.rows.push(kept);
        })?;
        store(&current, &mut gathered);
        Ok(())
    }

    /// The clusters (ids) `changed` names, directly or through their DNS names and
    /// components.
    fn changed_clusters(&self, changed: Changed) -> Vec<String> {
        let retagged: HashSet<u32> = changed
            .retagged
            .iter()
            .filter_map(|component| self.components.get(component))
            .collect();
        let mut ids = changed.clusters;
        if !changed.reported.is_empty() || !retagged.is_empty() {
            for (id, cluster) in &self.clusters {
                let reread = changed.reported.contains(&*cluster.dns)
                    || cluster
                        .rows
                        .iter()
                        .any(|row| row.claimed() && retagged.contains(&row.component()));
                if reread && !ids.contains(&**id) {
                    ids.insert(id.to_string());
                }
            }
        }
        ids.into_iter().collect()
    }

    fn fold_component<A>(
        &self,
        component: &str,
        polls: &PollTracker,
        now: u64,
        init: A,
        mut fold: impl FnMut(A, &KeptState<'_>) -> A,
    ) -> A {
        let Some(number) = self.components.get(component) else {
            return init;
        };
        let mut folded = init;
        for (id, cluster) in &self.clusters {
            let Some(row) = cluster.rows.iter().find(|r| r.component() == number) else {
                continue;
            };
            let stale = row.enabled() && polls.fresh_until_of(&cluster.dns, now).is_none();
            let state = KeptState {
                cluster_id: id,
                environment: self.environments.name(cluster.environment),
                enabled: row.enabled(),
                state: if stale {
                    State::Stale
                } else {
                    row.unless_stale()
                },
                reported_revision: cluster
                    .revisions
                    .iter()
                    .find(|(c, _)| *c == number)
                    .map(|(_, r)| self.revisions.name(*r)),
            };
            folded = fold(folded, &state);
        }
        folded
    }

    /// The summary at `now`, and the last second it holds if nothing else changes: the
    /// earliest at which a cluster fresh now turns stale.
    fn summary(&self, polls: &PollTracker, now: u64) -> (FleetStatus, u64) {
        let environments = self.environments.len();
        let mut counts: Vec<Option<StateCounts>> = vec![None; self.components.len() * environments];
        let mut stale_clusters = Vec::new();
        let mut stale_count = 0;
        let mut holds_until = u64::MAX;
        for (id, cluster) in &self.clusters {
            let stale = match polls.fresh_until_of(&cluster.dns, now) {
                Some(until) => {
                    holds_until = holds_until.min(until);
                    false
                }
                None => {
                    stale_count += 1;
                    if stale_clusters.len() < STALE_LISTED {
                        stale_clusters.push(id.to_string());
                    }
                    true
                }
            };
            for row in &cluster.rows {
                let state = if stale && row.enabled() {
                    State::Stale
                } else {
                    row.unless_stale()
                };
                let at = row.component() as usize * environments + cluster.environment as usize;
                counts[at].get_or_insert_default().add(state);
            }
        }
        let mut components = Vec::new();
        for component in self.components.sorted() {
            let mut total = StateCounts::default();
            let mut listed = Vec::new();
            for environment in self.environments.sorted() {
                let at = component as usize * environments + environment as usize;
                if let Some(counts) = &counts[at] {
                    total.merge(counts);
                    listed.push(EnvironmentCounts {
                        environment: self.environments.name(environment).to_owned(),
                        counts: counts.clone(),
                    });
                }
            }
            if !listed.is_empty() {
                components.push(ComponentSummary {
                    component: self.components.name(component).to_owned(),
                    counts: total,
                    environments: listed,
                });
            }
        }
        let summary = FleetStatus {
            clusters: self.clusters.len() as u64,
            components,
            stale_count,
            stale_clusters,
        };
        (summary, holds_until)
    }
}

/// Names as small numbers, so each kept row is a few bytes.
#[derive(Default)]
struct Interner {
    names: Vec<Box<str>>,
    numbers: HashMap<Box<str>, u32>,
}

impl Interner {
    fn intern(&mut self, name: &str) -> u32 {
        if let Some(&number) = self.numbers.get(name) {
            return number;
        }
        let number = self.names.len() as u32;
        self.names.push(name.into());
        self.numbers.insert(name.into(), number);
        number
    }

    fn get(&self, name: &str) -> Option<u32> {
        self.numbers.get(name).copied()
    }

    fn name(&self, number: u32) -> &str {
        &self.names[number as usize]
    }

    fn len(&self) -> usize {
        self.names.len()
    }

    /// The numbers in name order.
    fn sorted(&self) -> Vec<u32> {
        let mut numbers: Vec<u32> = (0..self.names.len() as u32).collect();
        numbers.sort_by(|a, b| self.name(*a).cmp(self.name(*b)));
        numbers
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_row_keeps_every_state_and_flag_of_a_large_component_number() {
        for state in State::ALL {
            for (enabled, claimed) in [(false, false), (true, false), (false, true), (true, true)] {
                let row = Row::new(0xAB_CDEF, state, enabled, claimed);
                let read = (
                    row.component(),
                    row.unless_stale(),
                    row.enabled(),
                    row.claimed(),
                );
                assert_eq!(read, (0xAB_CDEF, state, enabled, claimed));
            }
        }
    }

    #[test]
    fn names_are_dropped_until_first_read_and_past_the_limit() {
        let cache = SummaryCache::default();
        cache.written(["a".to_owned()], [], false);
        let taken = std::mem::replace(&mut *lock(&cache.0.changed), Changed::nothing());
        assert!(
            taken.everything && taken.clusters.is_empty(),
            "nothing read yet"
        );

        let ids = (0..=Changed::MAX_NAMED).map(|n| n.to_string());
        cache.written(ids, ["cert-manager".to_owned()], false);
        assert!(!lock(&cache.0.changed).everything);
        cache.reported(["one.example.com"]);
        let changed = lock(&cache.0.changed);
        assert!(changed.everything && changed.clusters.is_empty() && changed.reported.is_empty());
    }

    #[test]
    fn names_are_numbered_once_and_listed_in_name_order() {
        let mut names = Interner::default();
        let (b, a) = (names.intern("b"), names.intern("a"));
        assert_eq!(names.intern("b"), b);
        assert_eq!(names.get("a"), Some(a));
        assert_eq!(names.sorted(), vec![a, b]);
        assert_eq!(names.name(b), "b");
    }
}
