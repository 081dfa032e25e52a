//! The audit page: who changed what, each entry's before/after difference, and a revert that
//! asks first.

use maud::{Markup, html};
use poem::http::StatusCode;
use poem::web::{Data, Path, Query, Redirect};
use poem::{Body, IntoResponse, Request, Response, handler};
use serde::Deserialize;
use serde_json::Value;

use super::layout::{Section, page};
use super::pages::{can_write, error_page, failure, html_response, session_of, write_form};
use crate::domain::report::format_timestamp;
use crate::store::Store;
use crate::store::audit::{self, Entry};

/// Entries per page.
const PAGE: u32 = 50;

#[derive(Deserialize, Default)]
pub struct AuditQuery {
    /// Entries older than this revision (the next page).
    before: Option<i64>,
}

/// What changed between two states: each top-level field whose value differs, with both
/// values as compact JSON (`None`: absent on that side).
pub fn changed_fields(
    before: Option<&Value>,
    after: Option<&Value>,
) -> Vec<(String, Option<String>, Option<String>)> {
    let empty = serde_json::Map::new();
    let fields = |v: Option<&Value>| v.and_then(Value::as_object).unwrap_or(&empty).clone();
    let (old, new) = (fields(before), fields(after));
    let mut keys: Vec<&String> = old.keys().chain(new.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter(|key| old.get(*key) != new.get(*key))
        .map(|key| {
            (
                key.clone(),
                old.get(key).map(Value::to_string),
                new.get(key).map(Value::to_string),
            )
        })
        .collect()
}

fn diff(entry: &Entry) -> Markup {
    let fields = changed_fields(entry.before.as_ref(), entry.after.as_ref());
    html! {
        @if fields.is_empty() {
            span.muted { "no field changed" }
        } @else {
            table {
                thead { tr { th { "Field" } th { "Before" } th { "After" } } }
                tbody {
                    @for (field, old, new) in &fields {
                        tr {
                            td { code { (field) } }
                            td { @match old { Some(v) => code { (v) }, None => span.muted { "—" } } }
                            td { @match new { Some(v) => code { (v) }, None => span.muted { "—" } } }
                        }
                    }
                }
            }
        }
    }
}

#[handler]
pub async fn audit_page(
    req: &Request,
    Data(store): Data<&Store>,
    Query(query): Query<AuditQuery>,
) -> Response {
    let Some(session) = session_of(req) else {
        return Redirect::see_other("/ui/login").into_response();
    };
    // The API's rule (`GET /audit` takes the write token): every before and after of the
    // trail is not for a read token's eyes.
    if session.access != super::Access::Write {
        return error_page(
            StatusCode::FORBIDDEN,
            "the audit trail is read with the write token, as GET /audit is",
        );
    }
    let before = query.before;
    let entries = match store
        .read(move |conn| audit::recent(conn, before, PAGE))
        .await
    {
        Ok(entries) => entries,
        Err(err) => return failure(err),
    };
    let writes = can_write(req, session);
    let body = html! {
        @if entries.is_empty() {
            p.notice { "No audit entry." }
        }
        table {
            thead { tr { th { "Revision" } th { "When" } th { "Who" } th { "What" } th { "Change" } @if writes { th { span.muted { "Undo" } } } } }
            tbody {
                @for entry in &entries {
                    tr id=(format!("revision-{}", entry.revision)) {
                        td { (entry.revision) }
                        td { (format_timestamp(entry.at)) }
                        td { (entry.actor) }
                        td { (entry.method) " " (entry.kind) " " code { (entry.resource_id) } }
                        td { details { summary { "before / after" } (diff(entry)) } }
                        @if writes {
                            td {
                                @if entry.kind != crate::store::tokens::TOKENS {
                                    a href=(format!("/ui/audit/{}/revert", entry.revision)) { "Revert…" }
                                }
                            }
                        }
                    }
                }
            }
        }
        @if let Some(last) = entries.last().filter(|_| entries.len() as u32 == PAGE) {
            nav.pager aria-label="Pages" { a href=(format!("/ui/audit?before={}", last.revision)) { "Older →" } }
        }
    };
    html_response(
        StatusCode::OK,
        page("Audit", Section::Audit, Some(session), body),
    )
}

/// The question before a revert: what it restores.
#[handler]
pub async fn revert_form(
    req: &Request,
    Data(store): Data<&Store>,
    Path(revision): Path<i64>,
) -> Response {
    let Some(session) = session_of(req) else {
        return Redirect::see_other("/ui/login").into_response();
    };
    if !can_write(req, session) {
        return error_page(
            StatusCode::FORBIDDEN,
            "this session reads only: sign in with the write token to revert",
        );
    }
    let entry = match store.read(move |conn| audit::get(conn, revision)).await {
        Ok(entry) => entry,
        Err(err) => return failure(err),
    };
    let body = html! {
        p {
            "Put " (entry.kind) " " code { (entry.resource_id) } " back to its state before revision "
            (entry.revision) " (" (entry.method) " by " (entry.actor) ", " (format_timestamp(entry.at)) ")? "
            "The revert is a new write, checked and audited like any other."
        }
        (diff(&entry))
        form method="post" action=(format!("/ui/audit/{}/revert", entry.revision)) {
            input type="hidden" name="csrf" value=(session.csrf);
            label {
                "Confirm a number of clusters (only when the server asks: blast radius)"
                input type="number" name="confirm" min="0";
            }
            label {
                "Confirm a number of closed clusters (only when the server asks: maintenance window)"
                input type="number" name="confirm_closed" min="0";
            }
            p { button type="submit" { "Revert revision " (entry.revision) } " " a href="/ui/audit" { "Cancel" } }
        }
    };
    html_response(
        StatusCode::OK,
        page("Revert?", Section::Audit, Some(session), body),
    )
}

#[derive(Deserialize)]
struct RevertForm {
    #[serde(default)]
    confirm: String,
    #[serde(default)]
    confirm_closed: String,
}

#[handler]
pub async fn revert(
    req: &Request,
    Data(store): Data<&Store>,
    Path(revision): Path<i64>,
    body: Body,
) -> Response {
    let (form, session) = match write_form::<RevertForm>(req, body).await {
        Ok(posted) => posted,
        Err(response) => return *response,
    };
    let confirm = form.confirm.trim().parse().ok();
    let confirm_closed = form.confirm_closed.trim().parse().ok();
    match store
        .revert(revision, session.actor(), confirm, confirm_closed)
        .await
    {
        Ok(reverted) => {
            Redirect::see_other(format!("/ui/audit#revision-{}", reverted.revision)).into_response()
        }
        Err(err) => failure(err),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn only_changed_fields_are_listed() {
        let before = json!({"id": "a", "labels": {"x": "1"}, "node_count": 3});
        let after = json!({"id": "a", "labels": {"x": "2"}, "vm_image": "v"});
        let fields = changed_fields(Some(&before), Some(&after));
        let names: Vec<&str> = fields.iter().map(|(k, ..)| k.as_str()).collect();
        assert_eq!(names, vec!["labels", "node_count", "vm_image"]);
        assert_eq!(fields[1].2, None, "node_count is gone after");
        assert_eq!(
            changed_fields(None, Some(&after)).len(),
            3,
            "a create lists every field"
        );
    }
}
