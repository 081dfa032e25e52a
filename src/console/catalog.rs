//! The catalog page: each component with its version matrix — per environment, how many
//! clusters report which revision, and how many fail.

use std::collections::BTreeMap;

use maud::html;
use poem::http::StatusCode;
use poem::web::{Data, Redirect};
use poem::{IntoResponse, Request, Response, handler};

use super::layout::{Section, page};
use super::pages::{failure, html_response, session_of};
use crate::domain::model::PlatformComponent;
use crate::domain::report::State;
use crate::store::reports::{self, Scope};
use crate::store::{Page, Store, components};

/// One cell of the matrix: clusters of one environment running one component.
#[derive(Default)]
struct Cell {
    /// Reported revision (`None`: nothing decisive reported) → clusters.
    revisions: BTreeMap<Option<String>, u64>,
    failed: u64,
    stale: u64,
}

#[handler]
pub async fn catalog_page(req: &Request, Data(store): Data<&Store>) -> Response {
    let Some(session) = session_of(req) else {
        return Redirect::see_other("/ui/login").into_response();
    };
    let polls = store.polls().clone();
    let now = crate::api::observe::unix_now() as u64;
    let loaded = store
        .read(move |conn| {
            let catalog = components::list(conn, None, Page::default())?;
            // component → environment → cell, in one pass over the fleet.
            let mut matrix: BTreeMap<String, BTreeMap<String, Cell>> = BTreeMap::new();
            reports::for_each_component(conn, &Scope::default(), &polls, now, |row| {
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
            })?;
            Ok((catalog, matrix))
        })
        .await;
    let (catalog, matrix): (Vec<PlatformComponent>, _) = match loaded {
        Ok(loaded) => loaded,
        Err(err) => return failure(err),
    };
    let environments = ["dev", "qa", "uat", "prod"];
    let body = html! {
        p.muted { "Per environment: clusters per reported chart revision (— : nothing decisive reported yet), and how many fail or are stale." }
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
                        td { strong { (component.id) } br; span.muted { (component.component_path) } }
                        td { code { (component.oci_tag) } br; span.muted { (component.component_version) } }
                        @for env in environments {
                            td {
                                @if let Some(cell) = matrix.get(&component.id).and_then(|m| m.get(env)) {
                                    @for (revision, n) in &cell.revisions {
                                        span.label { @match revision { Some(r) => code { (r) }, None => "—" } " ×" (n) }
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
