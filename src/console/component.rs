//! One component across the fleet: which version runs where (reported chart revisions ×
//! environments, in version order, the catalog's marked, failures in the failure colour),
//! each count opening the clusters behind it, and the component's rollouts.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use maud::html;
use poem::http::StatusCode;
use poem::web::{Data, Path, Query, Redirect};
use poem::{IntoResponse, Request, Response, handler};
use serde::Deserialize;

use super::layout::{self, Section, page};
use super::pages::{error_page, failure, html_response, session_of};
use crate::domain::report::State;
use crate::store::Store;
use crate::store::convergence::{ComponentState, Scope};

/// Clusters listed under a chosen count.
const LISTED: usize = 200;
const ENVIRONMENTS: [&str; 4] = ["dev", "qa", "uat", "prod"];

#[derive(Deserialize, Default)]
pub struct ComponentQuery {
    #[serde(default)]
    environment: String,
    /// A reported revision; `none`: nothing decisive reported.
    #[serde(default)]
    version: String,
    /// `failed`: only failing clusters.
    #[serde(default)]
    state: String,
}

/// Clusters of one environment on one reported revision.
#[derive(Default, Clone, Copy)]
struct Count {
    clusters: u64,
    failed: u64,
}

/// The clusters of one component per reported revision and environment, and the chosen ones.
#[derive(Default)]
struct Matrix {
    /// Few revisions: a list searched in order beats a map keyed by owned strings.
    counts: Vec<(Option<String>, BTreeMap<String, Count>)>,
    /// The first `LISTED` chosen clusters (ids), and how many were chosen.
    listed: Vec<String>,
    matching: usize,
}

impl Matrix {
    fn add(&mut self, revision: Option<&str>, environment: &str, failed: bool) {
        let at = match self
            .counts
            .iter()
            .position(|(r, _)| r.as_deref() == revision)
        {
            Some(at) => at,
            None => {
                self.counts
                    .push((revision.map(str::to_owned), BTreeMap::new()));
                self.counts.len() - 1
            }
        };
        let environments = &mut self.counts[at].1;
        if !environments.contains_key(environment) {
            environments.insert(environment.to_owned(), Count::default());
        }
        let count = environments.get_mut(environment).expect("inserted above");
        count.clusters += 1;
        count.failed += u64::from(failed);
    }
}

/// Orders chart versions as versions, not strings: `0.2.3` < `0.16.12-dev` < `0.16.12` <
/// `0.22.6`; a leading `v` is ignored; a pre-release sorts before its release.
pub fn version_order(a: &str, b: &str) -> Ordering {
    fn key(text: &str) -> (Vec<u64>, bool, &str) {
        let text = text.strip_prefix('v').unwrap_or(text);
        let (main, pre) = text.split_once(['-', '+']).unwrap_or((text, ""));
        let numbers = main
            .split('.')
            .map(|part| part.parse::<u64>().unwrap_or(0))
            .collect();
        (numbers, pre.is_empty(), pre)
    }
    key(a).cmp(&key(b)).then_with(|| a.cmp(b))
}

/// Reported revisions newest first, "nothing reported" (`None`) last.
pub fn newest_first(a: &Option<String>, b: &Option<String>) -> Ordering {
    match (a, b) {
        (Some(a), Some(b)) => version_order(b, a),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => Ordering::Equal,
    }
}

fn link(id: &str, environment: &str, version: &str, state: &str) -> String {
    let mut params = vec![("environment", environment), ("version", version)];
    if !state.is_empty() {
        params.push(("state", state));
    }
    format!(
        "/ui/components/{id}?{}",
        serde_urlencoded::to_string(&params).unwrap_or_default()
    )
}

#[handler]
pub async fn component_page(
    req: &Request,
    Data(store): Data<&Store>,
    Path(id): Path<String>,
    Query(query): Query<ComponentQuery>,
) -> Response {
    let Some(session) = session_of(req) else {
        return Redirect::see_other("/ui/login").into_response();
    };
    let (environment, version, only_failed) = (
        query.environment.clone(),
        query.version.clone(),
        query.state == "failed",
    );
    let chosen = !environment.is_empty() || !version.is_empty() || only_failed;
    // The matrix and the chosen clusters from the kept states (no walk of every cluster's
    // reports); then the listed clusters' details, read for those clusters only.
    let folded = crate::store::summary::fold_component_states(
        store,
        id.clone(),
        Matrix::default(),
        move |mut matrix, row| {
            if !row.enabled {
                return matrix;
            }
            let failed = row.state == State::Failed;
            matrix.add(row.reported_revision, row.environment, failed);
            let wanted = (environment.is_empty() || environment == row.environment)
                && (version.is_empty() || row.reported_revision.unwrap_or("none") == version)
                && (!only_failed || failed);
            if chosen && wanted {
                matrix.matching += 1;
                if matrix.listed.len() < LISTED {
                    matrix.listed.push(row.cluster_id.to_owned());
                }
            }
            matrix
        },
    )
    .await;
    let Matrix {
        counts,
        listed: listed_ids,
        matching,
    } = match folded {
        Ok(folded) => folded,
        Err(err) => return failure(err),
    };
    let matrix: BTreeMap<Option<String>, BTreeMap<String, Count>> = counts.into_iter().collect();
    let polls = store.polls().clone();
    let now = store.clock().now_u64();
    let lookup = id.clone();
    let loaded = store
        .read(move |conn| {
            let Some(component) = crate::store::components::get(conn, &lookup)? else {
                return Ok(None);
            };
            let mut listed = Vec::new();
            if !listed_ids.is_empty() {
                let scope = Scope {
                    component: Some(lookup),
                    clusters: Some(listed_ids),
                    ..Scope::default()
                };
                crate::store::convergence::for_each_component(conn, &scope, &polls, now, |row| {
                    if row.enabled {
                        listed.push(ComponentState::from(row));
                    }
                })?;
            }
            Ok(Some((component, listed)))
        })
        .await;
    let (component, listed) = match loaded {
        Ok(Some(loaded)) => loaded,
        Ok(None) => {
            return error_page(
                StatusCode::NOT_FOUND,
                &format!("no platform component with id '{id}'"),
            );
        }
        Err(err) => return failure(err),
    };
    let rollouts = match store.rollouts().await {
        Ok(all) => all
            .into_iter()
            .filter(|r| r.spec.component == id)
            .collect::<Vec<_>>(),
        Err(err) => return failure(err),
    };
    let mut versions: Vec<Option<String>> = matrix.keys().cloned().collect();
    versions.sort_by(newest_first);
    let catalog_version = component.component_version.clone();
    let body = html! {
        dl.facts {
            dt { "Catalog" } dd { code { (component.oci_tag) } " · chart " code { (component.component_version) } " · " (component.component_path) }
            @if !component.depends_on.is_empty() { dt { "Depends on" } dd { (component.depends_on.join(", ")) } }
        }
        h2 { "Which version runs where" }
        p.muted { "Clusters per reported chart revision and environment; each number opens the clusters behind it." }
        table {
            thead { tr { th { "Revision" } @for env in ENVIRONMENTS { th { (env) } } } }
            tbody {
                @for revision in &versions {
                    @let key = revision.as_deref().unwrap_or("none");
                    tr {
                        td {
                            @match revision { Some(r) => code { (r) }, None => span.muted { "nothing reported" } }
                            @if revision.as_deref() == Some(catalog_version.as_str()) { " " span.label { "catalog" } }
                        }
                        @for env in ENVIRONMENTS {
                            td {
                                @match matrix.get(revision).and_then(|m| m.get(env)) {
                                    Some(count) => {
                                        a href=(link(&id, env, key, "")) { (count.clusters) }
                                        @if count.failed > 0 {
                                            " " a.state.state-failed href=(link(&id, env, key, "failed")) { (count.failed) " failed" }
                                        }
                                    }
                                    None => span.muted { "—" },
                                }
                            }
                        }
                    }
                }
            }
        }
        @if chosen {
            h2 {
                (matching) " cluster(s)"
                @if !query.environment.is_empty() { " in " (query.environment) }
                @if !query.version.is_empty() { " on " code { (query.version) } }
                @if query.state == "failed" { ", failing" }
            }
            @if matching > listed.len() { p.muted { "The first " (listed.len()) " are listed." } }
            table {
                thead { tr { th { "Cluster" } th { "Desired" } th { "Reported" } th { "State" } th { "Reason" } } }
                tbody {
                    @for c in &listed {
                        tr {
                            td { a href=(format!("/ui/clusters/{}", c.cluster_id)) { (c.cluster_id) } }
                            td { code { (c.desired) } }
                            td { @if let Some(r) = &c.reported_revision { code { (r) } } }
                            td { (layout::state(c.state.as_str())) }
                            td { @if let Some(reason) = &c.reason { (reason) } }
                        }
                    }
                }
            }
        }
        h2 { "Rollouts" }
        @if rollouts.is_empty() { p.muted { "None of this component." } }
        ul {
            @for r in &rollouts {
                li { a href=(format!("/ui/rollouts/{}", r.spec.id)) { (r.spec.id) } " → " code { (r.spec.target.oci_tag) } " · " (r.state.as_str()) }
            }
        }
    };
    html_response(
        StatusCode::OK,
        page(
            &format!("Component {id}"),
            Section::Catalog,
            Some(session),
            body,
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_sort_as_versions() {
        let mut found = vec!["0.16.12-dev", "0.2.3", "0.22.6-dev", "0.16.12", "v0.3.0"];
        found.sort_by(|a, b| version_order(a, b));
        assert_eq!(
            found,
            vec!["0.2.3", "v0.3.0", "0.16.12-dev", "0.16.12", "0.22.6-dev"]
        );
    }
}
