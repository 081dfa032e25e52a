//! The overlays pages (README, "Overlays"): every overlay with its selector, the clusters it
//! matches and the values it sets; one overlay's page with its edit form (the same preview as
//! a cluster edit).

use maud::{Markup, html};
use poem::http::StatusCode;
use poem::web::{Data, Path, Query, Redirect};
use poem::{Body, IntoResponse, Request, Response, handler};
use serde::Deserialize;

use super::edit;
use super::layout::{Section, page};
use super::pages::{can_write, error_page, failure, html_response, session_of};
use crate::domain::overlay::{Overlay, Selector};
use crate::store::{Store, overlays};

/// Clusters named on an overlay's page (the count covers them all).
const LISTED_CLUSTERS: u32 = 50;

fn selector(selector: &Selector) -> Markup {
    html! {
        @if selector.environment.is_none() && selector.labels.is_empty() {
            span.muted { "every cluster" }
        }
        @if let Some(environment) = selector.environment { span.label { "environment=" (environment.as_str()) } }
        @for (key, value) in &selector.labels { span.label { (key) "=" (value) } }
    }
}

/// `traefik: oci_tag 32.1.0` per component entry, and the patch keys it sets.
fn values(overlay: &Overlay) -> Markup {
    html! {
        @for entry in &overlay.platform_components {
            div {
                strong { (entry.id) } ":"
                @if let Some(enabled) = entry.enabled { " " @if enabled { "assigned, enabled" } @else { "assigned, disabled" } }
                @if let Some(tag) = &entry.oci_tag { " oci_tag " code { (tag) } }
                @if let Some(path) = &entry.component_path { " component_path " code { (path) } }
            }
        }
        @for (component, patch) in &overlay.patches {
            div { strong { (component) } ": patches " @for key in patch.keys() { code { (key) } " " } }
        }
        @if !overlay.namespaces.is_empty() { div { "namespaces: " (overlay.namespaces.join(", ")) } }
        @if !overlay.rolebindings.is_empty() { div { "rolebindings: " (overlay.rolebindings.join(", ")) } }
    }
}

#[handler]
pub async fn overlays_page(req: &Request, Data(store): Data<&Store>) -> Response {
    let Some(session) = session_of(req) else {
        return Redirect::see_other("/ui/login").into_response();
    };
    let listed = store
        .read(|conn| {
            let mut listed = Vec::new();
            for overlay in overlays::all(conn)? {
                let matched = overlays::count_matching(conn, &overlay.selector)?;
                listed.push((overlay, matched));
            }
            Ok(listed)
        })
        .await;
    let mut listed = match listed {
        Ok(listed) => listed,
        Err(err) => return failure(err),
    };
    // In the order they layer: the last one wins a field.
    listed.sort_by(|(a, _), (b, _)| (a.priority, &a.id).cmp(&(b.priority, &b.id)));
    let body = html! {
        p.muted {
            "Values and assignments set once for every cluster a selector matches. A cluster's feeds layer the catalog, "
            "then the overlays below in this order (a later one wins a field), then the cluster's own entry."
        }
        @if listed.is_empty() {
            p { "No overlay yet. Create one with " code { "POST /overlays" } " or " code { "flux-inputs overlay apply -f" } "." }
        } @else {
            table {
                thead { tr { th { "Overlay" } th { "Priority" } th { "Selector" } th { "Clusters" } th { "Values" } } }
                tbody {
                    @for (overlay, matched) in &listed {
                        tr {
                            td { a href=(format!("/ui/overlays/{}", overlay.id)) { (overlay.id) }
                                 @if !overlay.description.is_empty() { br; span.muted { (overlay.description) } } }
                            td { (overlay.priority) }
                            td { (selector(&overlay.selector)) }
                            td { (matched) }
                            td { (values(overlay)) }
                        }
                    }
                }
            }
        }
    };
    html_response(
        StatusCode::OK,
        page("Overlays", Section::Overlays, Some(session), body),
    )
}

#[derive(Deserialize)]
pub struct OverlayQuery {
    saved: Option<i64>,
}

#[handler]
pub async fn overlay_page(
    req: &Request,
    Data(store): Data<&Store>,
    Path(id): Path<String>,
    Query(query): Query<OverlayQuery>,
) -> Response {
    let Some(session) = session_of(req) else {
        return Redirect::see_other("/ui/login").into_response();
    };
    let lookup = id.clone();
    let found = store
        .read(move |conn| {
            let Some(overlay) = overlays::get(conn, &lookup)? else {
                return Ok(None);
            };
            let count = overlays::count_matching(conn, &overlay.selector)?;
            let first = overlays::matching_clusters_limited(
                conn,
                &overlay.selector,
                Some(LISTED_CLUSTERS),
            )?;
            Ok(Some((overlay, count, first)))
        })
        .await;
    let (overlay, count, first) = match found {
        Ok(Some(found)) => found,
        Ok(None) => {
            return error_page(StatusCode::NOT_FOUND, &format!("no overlay with id '{id}'"));
        }
        Err(err) => return failure(err),
    };
    let body = html! {
        @if let Some(revision) = query.saved {
            p.notice role="status" { "Saved as audit revision " (revision) ". " a href="/ui/audit" { "See it in the audit trail" } }
        }
        dl.facts {
            @if !overlay.description.is_empty() { dt { "Description" } dd { (overlay.description) } }
            dt { "Selector" } dd { (selector(&overlay.selector)) }
            dt { "Priority" } dd { (overlay.priority) }
            dt { "Clusters" } dd {
                (count) " matched"
                @if count > 0 { ": " }
                @for cluster in &first { a href=(format!("/ui/clusters/{cluster}")) { (cluster) } " " }
                @if count > u64::from(LISTED_CLUSTERS) { span.muted { "and " (count - u64::from(LISTED_CLUSTERS)) " more" } }
            }
        }
        h2 { "Values" }
        @if overlay.platform_components.is_empty() && overlay.patches.is_empty() && overlay.namespaces.is_empty() && overlay.rolebindings.is_empty() {
            p.muted { "It sets nothing yet." }
        } @else {
            table {
                thead { tr { th { "Component" } th { "Assigns" } th { "oci_tag" } th { "component_path" } th { "Patches" } } }
                tbody {
                    @for entry in &overlay.platform_components {
                        tr {
                            td { (entry.id) }
                            td { @match entry.enabled { Some(true) => "enabled", Some(false) => "disabled", None => span.muted { "only values" } } }
                            td { @if let Some(tag) = &entry.oci_tag { code { (tag) } } }
                            td { @if let Some(path) = &entry.component_path { code { (path) } } }
                            td { @for (key, value) in overlay.patches.get(&entry.id).into_iter().flatten() { code { (key) "=" (value.to_string()) } br; } }
                        }
                    }
                    @for (component, patch) in overlay.patches.iter().filter(|(c, _)| !overlay.platform_components.iter().any(|e| &e.id == *c)) {
                        tr {
                            td { (component) } td { span.muted { "only values" } } td {} td {}
                            td { @for (key, value) in patch { code { (key) "=" (value.to_string()) } br; } }
                        }
                    }
                }
            }
            @if !overlay.namespaces.is_empty() { p { "Namespaces added: " (overlay.namespaces.join(", ")) } }
            @if !overlay.rolebindings.is_empty() { p { "Rolebindings added: " (overlay.rolebindings.join(", ")) } }
        }
        @if can_write(req, session) {
            h2 { "Edit" }
            (edit::form(session, &format!("/ui/overlays/{}", overlay.id), "The overlay", &overlay))
        }
    };
    html_response(
        StatusCode::OK,
        page(
            &format!("Overlay {id}"),
            Section::Overlays,
            Some(session),
            body,
        ),
    )
}

#[handler]
pub async fn preview_edit(
    req: &Request,
    Data(store): Data<&Store>,
    Path(id): Path<String>,
    body: Body,
) -> Response {
    edit::preview::<Overlay>(req, store, id, body, "/ui/overlays", Section::Overlays).await
}

#[handler]
pub async fn save_edit(
    req: &Request,
    Data(store): Data<&Store>,
    Path(id): Path<String>,
    body: Body,
) -> Response {
    edit::save::<Overlay>(req, store, id, body, "/ui/overlays", Section::Overlays).await
}
