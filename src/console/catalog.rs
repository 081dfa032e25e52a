//! The catalog page: one line per component — the catalog's tag and chart, how many clusters
//! run it, how many report the catalog's chart, how many another or nothing yet, and how
//! many fail or are stale. Its page (`component.rs`) breaks each number down.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use maud::html;
use poem::http::StatusCode;
use poem::web::{Data, Redirect};
use poem::{IntoResponse, Request, Response, handler};

use super::layout::{Section, page};
use super::pages::{failure, html_response, session_of};
use crate::domain::model::PlatformComponent;
use crate::domain::report::State;
use crate::store::convergence::Scope;
use crate::store::{Page, Store, components};

/// The clusters running one component (enabled).
#[derive(Default)]
struct Usage {
    clusters: u64,
    /// Reported revision (`None`: nothing decisive reported) → clusters.
    revisions: BTreeMap<Option<String>, u64>,
    failed: u64,
    stale: u64,
}

/// component → its usage.
type Usages = BTreeMap<String, Usage>;

/// How long counted usages are shown before it is computed again: one pass over every
/// (cluster, component) costs about 0.2 s at 10,000 clusters × 31 components.
const USAGE_FRESH: Duration = Duration::from_secs(10);

/// Usages and when they were counted.
type Counted = (Instant, Arc<Usages>);

/// The last usages counted (shared by every request).
#[derive(Clone, Default)]
pub struct UsageCache(Arc<Mutex<Option<Counted>>>);

impl UsageCache {
    fn fresh(&self) -> Option<Arc<Usages>> {
        let cached = self.0.lock().unwrap_or_else(|e| e.into_inner());
        cached
            .as_ref()
            .filter(|(at, _)| at.elapsed() < USAGE_FRESH)
            .map(|(_, usages)| usages.clone())
    }

    fn keep(&self, usages: Arc<Usages>) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some((Instant::now(), usages));
    }
}

impl Usage {
    /// Clusters reporting `version`.
    fn on(&self, version: &str) -> u64 {
        self.revisions
            .get(&Some(version.to_owned()))
            .copied()
            .unwrap_or(0)
    }

    /// Clusters with nothing decisive reported yet.
    fn unreported(&self) -> u64 {
        self.revisions.get(&None).copied().unwrap_or(0)
    }

    /// Other reported revisions than `version`: how many, on how many clusters.
    fn others(&self, version: &str) -> (usize, u64) {
        self.revisions
            .iter()
            .filter(|(revision, _)| revision.as_deref().is_some_and(|r| r != version))
            .fold((0, 0), |(kinds, clusters), (_, n)| {
                (kinds + 1, clusters + n)
            })
    }
}

#[handler]
pub async fn catalog_page(
    req: &Request,
    Data(store): Data<&Store>,
    Data(cache): Data<&UsageCache>,
) -> Response {
    let Some(session) = session_of(req) else {
        return Redirect::see_other("/ui/login").into_response();
    };
    let polls = store.polls().clone();
    let now = store.clock().now_u64();
    let cached = cache.fresh();
    let loaded = store
        .read(move |conn| {
            let catalog = components::list(conn, None, Page::default())?;
            if let Some(usages) = cached {
                return Ok((catalog, usages, true));
            }
            // component → usage, in one pass over the fleet.
            let mut usages = Usages::new();
            crate::store::convergence::for_each_component(
                conn,
                &Scope::default(),
                &polls,
                now,
                |row| {
                    if !row.enabled {
                        return;
                    }
                    let usage = usages.entry(row.component.to_owned()).or_default();
                    usage.clusters += 1;
                    *usage
                        .revisions
                        .entry(row.reported_revision.map(str::to_owned))
                        .or_default() += 1;
                    match row.state {
                        State::Failed => usage.failed += 1,
                        State::Stale => usage.stale += 1,
                        _ => {}
                    }
                },
            )?;
            Ok((catalog, Arc::new(usages), false))
        })
        .await;
    let (catalog, usages, reused): (Vec<PlatformComponent>, Arc<Usages>, bool) = match loaded {
        Ok(loaded) => loaded,
        Err(err) => return failure(err),
    };
    if !reused {
        cache.keep(usages.clone());
    }
    let none = Usage::default();
    let body = html! {
        p.muted {
            "Each component: the catalog's values, the clusters it is enabled on, what they report (the catalog's chart, another revision, nothing decisive yet), and how many fail or are stale. A component's page breaks each number down by environment and revision. "
            "Counted at most " (USAGE_FRESH.as_secs()) " s ago."
        }
        table.compact {
            thead {
                tr {
                    th { "Component" } th { "Tag" } th.wide { "Chart" } th.number { "Clusters" }
                    th.number.wide { "On the chart" } th.number.wide { "Other revisions" } th.number.wide { "Not reported" } th.number { "Failed" } th.number { "Stale" }
                }
            }
            tbody {
                @for component in &catalog {
                    @let usage = usages.get(&component.id).unwrap_or(&none);
                    @let href = format!("/ui/components/{}", component.id);
                    @let (other_kinds, other_clusters) = usage.others(&component.component_version);
                    tr {
                        td { a href=(href) { strong { (component.id) } } }
                        td { code { (component.oci_tag) } }
                        td.wide { code { (component.component_version) } }
                        td.number { (usage.clusters) }
                        td.number.wide { (usage.on(&component.component_version)) }
                        td.number.wide {
                            @if other_kinds > 0 { a href=(href) title="clusters on another revision" { (other_clusters) " on " (other_kinds) } }
                            @else { span.muted { "0" } }
                        }
                        td.number.wide { (usage.unreported()) }
                        td.number {
                            @if usage.failed > 0 { a.state.state-failed href=(format!("{href}?state=failed")) { (usage.failed) } }
                            @else { span.muted { "0" } }
                        }
                        td.number {
                            @if usage.stale > 0 { span class="state state-stale" { (usage.stale) } }
                            @else { span.muted { "0" } }
                        }
                    }
                }
            }
        }
    };
    html_response(
        StatusCode::OK,
        page("Catalog", Section::Catalog, Some(session), body),
    )
}
