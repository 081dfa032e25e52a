//! Editing a resource from the console: its JSON document, previewed as a dry run of the
//! same write (what changes for Flux, the blast radius), then saved at the revision the
//! preview was made at (a change made meanwhile is refused, not overwritten).

use maud::{Markup, html};
use poem::http::StatusCode;
use poem::web::Redirect;
use poem::{Body, IntoResponse, Request, Response};
use poem_openapi::types::{ParseFromJSON, ToJSON};
use serde::Deserialize;

use super::Session;
use super::layout::{Section, page};
use super::pages::{failure, html_response, write_form};
use crate::domain::feed::Preview;
use crate::store::{Resource, Store, WriteRequest};

#[derive(Deserialize)]
struct EditForm {
    /// The update as JSON; empty when the component form (`cluster_form`) was posted.
    #[serde(default)]
    document: String,
    /// The revision the preview was made at (`If-Match` of the save).
    #[serde(default)]
    revision: String,
    /// Clusters the write may take inputs from (blast radius).
    #[serde(default)]
    confirm: String,
    /// Closed clusters the write may change (maintenance windows).
    #[serde(default)]
    confirm_closed: String,
    /// The component form's fields (`c.<n>.id`, `c.<n>.oci_tag`, …).
    #[serde(flatten)]
    fields: std::collections::BTreeMap<String, String>,
}

/// The edit form of a resource page: its document, posted to `{base}/preview`.
pub fn form(session: &Session, base: &str, what: &str, value: &impl ToJSON) -> Markup {
    let document = value
        .to_json()
        .and_then(|value| serde_json::to_string_pretty(&value).ok())
        .unwrap_or_default();
    form_with(session, base, what, &document)
}

/// The edit form holding `document` as given.
fn form_with(session: &Session, base: &str, what: &str, document: &str) -> Markup {
    html! {
        form method="post" action=(format!("{base}/preview")) {
            input type="hidden" name="csrf" value=(session.csrf);
            label {
                (what) " as JSON (fields present replace the stored ones). Save shows what changes for Flux first."
                textarea name="document" rows="18" cols="90" { (document) }
            }
            p { button type="submit" { "Preview the change" } }
        }
    }
}

fn parse_update<U: ParseFromJSON>(text: &str) -> Result<U, String> {
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|err| format!("the document is not JSON: {err}"))?;
    U::parse_from_json(Some(value)).map_err(|err| format!("the document: {}", err.into_message()))
}

/// An edit that cannot be previewed or saved: the form again, with the text as typed and
/// what is wrong with it above, so nothing typed is lost.
fn again<R: Resource>(
    session: &Session,
    status: StatusCode,
    (base, id, section): (&str, &str, Section),
    document: &str,
    problem: &str,
) -> Response {
    let body = html! {
        p.notice.error role="alert" id="problem" { (problem) }
        (form_with(session, &format!("{base}/{id}"), &format!("The {}", R::KIND), document))
        p { a href=(format!("{base}/{id}")) { "Discard the edit" } }
    };
    html_response(
        status,
        page(&format!("Edit: {id}"), section, Some(session), body),
    )
}

/// The status and text of a refusal the person can act on in the form; other errors as they
/// are.
fn refusal(err: crate::error::AppError) -> Result<(StatusCode, String), crate::error::AppError> {
    use crate::error::AppError;
    let status = match &err {
        AppError::BadRequest(_) => StatusCode::BAD_REQUEST,
        AppError::Validation(_) => StatusCode::UNPROCESSABLE_ENTITY,
        AppError::Conflict(_) | AppError::BlastRadius(_) | AppError::WindowClosed(_) => {
            StatusCode::CONFLICT
        }
        AppError::PreconditionFailed(_) => StatusCode::PRECONDITION_FAILED,
        _ => return Err(err),
    };
    Ok((status, err.to_string()))
}

fn edit_request(session: &Session, dry_run: bool, form: &EditForm) -> WriteRequest {
    WriteRequest {
        dry_run,
        if_match: form.revision.trim().parse().ok(),
        confirm: form.confirm.trim().parse().ok(),
        confirm_closed: form.confirm_closed.trim().parse().ok(),
        ..WriteRequest::new(crate::store::audit::Change {
            actor: session.actor(),
            method: "PUT",
        })
    }
}

/// What a previewed write changes for Flux: clusters and feeds, what it takes away, the
/// maintenance windows it overrides (an edit's preview and a revert's question share it).
pub fn summary(preview: &Preview) -> Markup {
    let radius = &preview.blast_radius;
    html! {
        p.notice role="status" {
            "Nothing is saved yet. The change alters the feeds of " (preview.clusters_changed) " cluster(s)."
        }
        @if radius.clusters_shrunk > 0 {
            p.notice.error role="alert" {
                "It takes inputs away from " (radius.clusters_shrunk) " cluster(s) ("
                (radius.clusters_emptied) " emptied): Flux deletes what they rendered."
                @if radius.needs_confirm { " Saving needs the confirmation below." }
            }
        }
        @if preview.window_closed.clusters > 0 {
            p.notice.error role="alert" {
                "It changes " (preview.window_closed.clusters) " cluster(s) a maintenance window closes now: "
                @for (i, closed) in preview.window_closed.listed.iter().enumerate() {
                    @if i > 0 { ", " }
                    (closed.cluster_id) " (" (closed.windows.join(", ")) ")"
                }
                ". Saving overrides the window(s) and says so in the audit trail."
            }
        }
        @if preview.changes.is_empty() {
            p.muted { "No feed changes (the edit touches fields Flux does not see, or nothing)." }
        } @else {
            table {
                thead { tr { th { "Cluster" } th { "Feed" } th { "Added" } th { "Removed" } th { "Changed" } th { "Disabled" } } }
                tbody {
                    @for change in &preview.changes {
                        tr {
                            td { (change.cluster_dns) }
                            td { (change.feed) }
                            td { (change.added.join(", ")) }
                            td { (change.removed.join(", ")) }
                            td { (change.changed.join(", ")) }
                            td { (change.disabled.join(", ")) }
                        }
                    }
                }
            }
            @if preview.truncated {
                p.muted { "The first " (preview.changes.len()) " changed clusters are listed; the counts above cover them all." }
            }
        }
    }
}

/// An edit form as posted: its fields, the session allowed to post it, the update it asks
/// for (or the form again with the problem).
async fn posted<'r, R: Resource>(
    req: &'r Request,
    body: Body,
    place: (&str, &str, Section),
) -> Result<(EditForm, &'r Session, R::Update), Box<Response>>
where
    R::Update: ParseFromJSON,
{
    let (mut form, session) = write_form::<EditForm>(req, body).await?;
    if form.document.trim().is_empty() {
        match super::cluster_form::document(&form.fields) {
            Ok(document) => form.document = document,
            Err(problem) => {
                return Err(Box::new(again::<R>(
                    session,
                    StatusCode::BAD_REQUEST,
                    place,
                    "",
                    &problem,
                )));
            }
        }
    }
    match parse_update(&form.document) {
        Ok(update) => Ok((form, session, update)),
        Err(problem) => Err(Box::new(again::<R>(
            session,
            StatusCode::BAD_REQUEST,
            place,
            &form.document,
            &problem,
        ))),
    }
}

/// What an edit of `R` `id` (whose page is `{base}/{id}`) would change for Flux, before it
/// is saved: a dry run of the same write.
pub async fn preview<R: Resource>(
    req: &Request,
    store: &Store,
    id: String,
    body: Body,
    base: &str,
    section: Section,
) -> Response
where
    R::Update: ParseFromJSON,
{
    let place = (base, id.as_str(), section);
    let (form, session, update) = match posted::<R>(req, body, place).await {
        Ok(posted) => posted,
        Err(response) => return *response,
    };
    let (current, revision) = match store.fetch_with_revision::<R>(id.clone()).await {
        Ok(found) => found,
        Err(err) => return failure(err),
    };
    let request = edit_request(session, true, &form);
    let (preview, edited) = match store.update::<R>(id.clone(), update, request).await {
        Ok(written) => (written.preview.unwrap_or_default(), written.value),
        Err(err) => {
            return match refusal(err) {
                Ok((status, problem)) => {
                    again::<R>(session, status, place, &form.document, &problem)
                }
                Err(err) => failure(err),
            };
        }
    };
    let radius = &preview.blast_radius;
    let body = html! {
        h2 { "What the edit changes" }
        (super::audit::field_table(current.to_json().as_ref(), edited.to_json().as_ref()))
        h2 { "What Flux gets" }
        (summary(&preview))
        form method="post" action=(format!("{base}/{id}/save")) {
            input type="hidden" name="csrf" value=(session.csrf);
            input type="hidden" name="document" value=(form.document);
            input type="hidden" name="revision" value=(revision);
            @if radius.needs_confirm {
                label { "Confirm the number of clusters that lose inputs" input type="number" name="confirm" min="0" required; }
            }
            @if preview.window_closed.clusters > 0 {
                label { "Confirm the number of closed clusters to change" input type="number" name="confirm_closed" min="0" required; }
            }
            p { button type="submit" { "Save" } " " a href=(format!("{base}/{id}")) { "Cancel" } }
        }
    };
    html_response(
        StatusCode::OK,
        page(&format!("Preview: {id}"), section, Some(session), body),
    )
}

/// Saves an edit previewed by `preview`, then shows the resource's page.
pub async fn save<R: Resource>(
    req: &Request,
    store: &Store,
    id: String,
    body: Body,
    base: &str,
    section: Section,
) -> Response
where
    R::Update: ParseFromJSON,
{
    let place = (base, id.as_str(), section);
    let (form, session, update) = match posted::<R>(req, body, place).await {
        Ok(posted) => posted,
        Err(response) => return *response,
    };
    let request = edit_request(session, false, &form);
    match store.update::<R>(id.clone(), update, request).await {
        Ok(written) => {
            Redirect::see_other(format!("{base}/{id}?saved={}", written.revision)).into_response()
        }
        Err(err) => match refusal(err) {
            Ok((status, problem)) => again::<R>(session, status, place, &form.document, &problem),
            Err(err) => failure(err),
        },
    }
}
