//! The catalog page: each component with its version matrix — per environment, how many
//! clusters report which revision, and how many fail.

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

/// One cell of the matrix: clusters of one environment running one component.
#[derive(Default)]
struct Cell {
    /// Reported revision (`None`: nothing decisive reported) → clusters.
    revisions: BTreeMap<Option<String>, u64>,
    failed: u64,
    stale: u64,
}

/// component → environment → cell.
type Matrix = BTreeMap<String, BTreeMap<String, Cell>>;

/// How long a computed matrix is shown before it is computed again: one pass over every
/// (cluster, component) costs about 0.2 s at 10,000 clusters × 31 components.
const MATRIX_FRESH: Duration = Duration::from_secs(10);

/// A matrix and when it was counted.
type Counted = (Instant, Arc<Matrix>);

/// The last matrix computed (shared by every request).
#[derive(Clone, Default)]
pub struct MatrixCache(Arc<Mutex<Option<Counted>>>);

impl MatrixCache {
    fn fresh(&self) -> Option<Arc<Matrix>> {
        let cached = self.0.lock().unwrap_or_else(|e| e.into_inner());
        cached
            .as_ref()
            .filter(|(at, _)| at.elapsed() < MATRIX_FRESH)
            .map(|(_, matrix)| matrix.clone())
    }

    fn keep(&self, matrix: Arc<Matrix>) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some((Instant::now(), matrix));
    }
}

/// A cell's revisions newest first (as versions, not strings), "nothing reported" last.
fn in_version_order(revisions: &BTreeMap<Option<String>, u64>) -> Vec<(&Option<String>, &u64)> {
    let mut ordered: Vec<_> = revisions.iter().collect();
    ordered.sort_by(|(a, _), (b, _)| super::component::newest_first(a, b));
    ordered
}

#[handler]
pub async fn catalog_page(
    req: &Request,
    Data(store): Data<&Store>,
    Data(cache): Data<&MatrixCache>,
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
            if let Some(matrix) = cached {
                return Ok((catalog, matrix, true));
            }
            // component → environment → cell, in one pass over the fleet.
            let mut matrix = Matrix::new();
            crate::store::convergence::for_each_component(
                conn,
                &Scope::default(),
                &polls,
                now,
                |row| {
                    if !row.enabled {
                        return;
                    }
                    let cell = matrix
                        .entry(row.component.to_owned())
                        .or_default()
                        .entry(row.environment.to_owned())
                        .or_default();
                    *cell
                        .revisions
                        .entry(row.reported_revision.map(str::to_owned))
                        .or_default() += 1;
                    match row.state {
                        State::Failed => cell.failed += 1,
                        State::Stale => cell.stale += 1,
                        _ => {}
                    }
                },
            )?;
            Ok((catalog, Arc::new(matrix), false))
        })
        .await;
    let (catalog, matrix, reused): (Vec<PlatformComponent>, Arc<Matrix>, bool) = match loaded {
        Ok(loaded) => loaded,
        Err(err) => return failure(err),
    };
    if !reused {
        cache.keep(matrix.clone());
    }
    let environments = ["dev", "qa", "uat", "prod"];
    let body = html! {
        p.muted {
            "Per environment: clusters per reported chart revision, newest first (✓: the catalog's; — : nothing decisive reported yet), and how many fail or are stale; a component's page breaks each number down. "
            "Counted at most " (MATRIX_FRESH.as_secs()) " s ago."
        }
        table {
            thead {
                tr {
                    th { "Component" } th { "Catalog" }
                    @for env in environments { th { (env) } }
                }
            }
            tbody {
                @for component in &catalog {
                    tr {
                        td { a href=(format!("/ui/components/{}", component.id)) { strong { (component.id) } } br; span.muted { (component.component_path) } }
                        td { "tag " code { (component.oci_tag) } br; span.muted { "chart " (component.component_version) } }
                        @for env in environments {
                            td {
                                @if let Some(cell) = matrix.get(&component.id).and_then(|m| m.get(env)) {
                                    @for (revision, n) in in_version_order(&cell.revisions) {
                                        @let catalog = revision.as_deref() == Some(component.component_version.as_str());
                                        span.label title=[catalog.then_some("the catalog's version")] {
                                            @match revision { Some(r) => code { (r) }, None => "—" } " ×" (n)
                                            @if catalog { " ✓" }
                                        }
                                    }
                                    @if cell.failed > 0 { br; span class="state state-failed" { (cell.failed) " failed" } }
                                    @if cell.stale > 0 { br; span class="state state-stale" { (cell.stale) " stale" } }
                                } @else {
                                    span.muted { "—" }
                                }
                            }
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
