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
    /// Only this kind of record (`clusters`, `platform_components`, …).
    #[serde(default)]
    kind: String,
    /// Only this record's id.
    #[serde(default)]
    id: String,
    /// Only this actor (a token's name, `write-token`, `console:…`, `rollout:…`).
    #[serde(default)]
    actor: String,
}

/// The kinds of record the audit trail holds.
const KINDS: [&str; 8] = [
    "clusters",
    crate::store::assignments::KIND,
    "platform_components",
    "namespaces",
    "rolebindings",
    "overlays",
    "windows",
    "tokens",
];

/// What changed between two states, field by field: objects are followed key by key, lists
/// of records by their `id` (`platform_components[traefik].oci_tag`), anything else compared
/// whole; each difference with both values as compact JSON (`None`: absent on that side).
pub fn changed_fields(
    before: Option<&Value>,
    after: Option<&Value>,
) -> Vec<(String, Option<String>, Option<String>)> {
    let mut found = Vec::new();
    walk("", before, after, &mut found);
    found
}

fn walk(
    path: &str,
    old: Option<&Value>,
    new: Option<&Value>,
    found: &mut Vec<(String, Option<String>, Option<String>)>,
) {
    if old == new {
        return;
    }
    let join = |key: &str| {
        if path.is_empty() {
            key.to_owned()
        } else {
            format!("{path}.{key}")
        }
    };
    match (old, new) {
        (Some(Value::Object(a)), Some(Value::Object(b))) => {
            let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
            keys.sort();
            keys.dedup();
            for key in keys {
                walk(&join(key), a.get(key), b.get(key), found);
            }
        }
        (Some(Value::Array(a)), Some(Value::Array(b))) if by_id(a) && by_id(b) => {
            let id = |v: &Value| v["id"].as_str().unwrap_or_default().to_owned();
            let mut ids: Vec<String> = a.iter().chain(b.iter()).map(id).collect();
            ids.dedup();
            let mut seen = std::collections::HashSet::new();
            for key in ids.into_iter().filter(|key| seen.insert(key.clone())) {
                let pick = |list: &[Value]| list.iter().find(|v| id(v) == key).cloned();
                let (x, y) = (pick(a), pick(b));
                walk(&format!("{path}[{key}]"), x.as_ref(), y.as_ref(), found);
            }
        }
        // A create or a delete at the top: one line per field.
        (None, Some(Value::Object(b))) if path.is_empty() => {
            for (key, value) in b {
                found.push((key.clone(), None, Some(value.to_string())));
            }
        }
        (Some(Value::Object(a)), None) if path.is_empty() => {
            for (key, value) in a {
                found.push((key.clone(), Some(value.to_string()), None));
            }
        }
        _ => found.push((
            path.to_owned(),
            old.map(Value::to_string),
            new.map(Value::to_string),
        )),
    }
}

/// A list of records that carry an `id` (components, overlay entries): compared per record.
fn by_id(list: &[Value]) -> bool {
    list.iter()
        .all(|v| v.get("id").is_some_and(Value::is_string))
}

fn urlencode(text: &str) -> String {
    serde_urlencoded::to_string([("", text)])
        .unwrap_or_default()
        .trim_start_matches('=')
        .to_owned()
}

fn diff(entry: &Entry) -> Markup {
    field_table(entry.before.as_ref(), entry.after.as_ref())
}

/// Fields a table shows: a rollout's write over 10,000 clusters has tens of thousands.
const SHOWN_FIELDS: usize = 200;

/// What changed between two states of a record, one row per field (an audit entry, an
/// edit's preview), the first `SHOWN_FIELDS` of them.
pub fn field_table(before: Option<&Value>, after: Option<&Value>) -> Markup {
    let fields = changed_fields(before, after);
    let more = fields.len().saturating_sub(SHOWN_FIELDS);
    html! {
        @if fields.is_empty() {
            span.muted { "no field changed" }
        } @else {
            table {
                thead { tr { th { "Field" } th { "Before" } th { "After" } } }
                tbody {
                    @for (field, old, new) in fields.iter().take(SHOWN_FIELDS) {
                        tr {
                            td { code { (field) } }
                            td { @match old { Some(v) => code { (v) }, None => span.muted { "—" } } }
                            td { @match new { Some(v) => code { (v) }, None => span.muted { "—" } } }
                        }
                    }
                    @if more > 0 {
                        tr { td colspan="3" { span.muted { "… and " (more) " more (GET /audit has them all)" } } }
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
    let given = |text: &str| Some(text.trim().to_owned()).filter(|t| !t.is_empty());
    let narrow = audit::Narrow {
        kind: given(&query.kind),
        resource_id: given(&query.id),
        actor: given(&query.actor),
    };
    let entries = match store
        .read(move |conn| audit::recent(conn, before, PAGE, &narrow))
        .await
    {
        Ok(entries) => entries,
        Err(err) => return failure(err),
    };
    let writes = can_write(req, session);
    let older = |revision: i64| {
        let mut params = vec![("before", revision.to_string())];
        for (key, value) in [
            ("kind", &query.kind),
            ("id", &query.id),
            ("actor", &query.actor),
        ] {
            if !value.is_empty() {
                params.push((key, value.clone()));
            }
        }
        format!(
            "/ui/audit?{}",
            serde_urlencoded::to_string(&params).unwrap_or_default()
        )
    };
    let body = html! {
        form.filters method="get" action="/ui/audit" role="search" {
            label {
                "Kind"
                select name="kind" {
                    option value="" { "all" }
                    @for kind in KINDS { option value=(kind) selected[query.kind == kind] { (kind) } }
                }
            }
            label { "Id" input type="search" name="id" value=(query.id); }
            label { "Who" input type="search" name="actor" value=(query.actor) placeholder="write-token, console:…"; }
            button type="submit" { "Filter" }
        }
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
                        td { a href=(format!("/ui/audit?actor={}", urlencode(&entry.actor))) { (entry.actor) } }
                        td {
                            (entry.method) " " (entry.kind) " "
                            a href=(format!("/ui/audit?kind={}&id={}", urlencode(&entry.kind), urlencode(&entry.resource_id))) { code { (entry.resource_id) } }
                            @if entry.window_override.is_some() { br; span.label { "overrode a maintenance window" } }
                        }
                        td {
                            @let lines = changed_fields(entry.before.as_ref(), entry.after.as_ref()).len();
                            @if lines <= 6 { (diff(entry)) }
                            @else { details { summary { (lines) " fields" } (diff(entry)) } }
                        }
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
            nav.pager aria-label="Pages" { a href=(older(last.revision)) { "Older →" } }
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
    // What the revert would do, as a dry run of the same write.
    let dry_run = crate::store::RevertOptions {
        dry_run: true,
        ..Default::default()
    };
    let previewed = store.revert(revision, session.actor(), dry_run).await;
    if let Err(crate::error::AppError::Internal(message)) = &previewed {
        tracing::error!(error = %message, revision, "a revert could not be previewed");
    }
    let body = html! {
        p {
            "Put " (entry.kind) " " code { (entry.resource_id) } " back to its state before revision "
            (entry.revision) " (" (entry.method) " by " (entry.actor) ", " (format_timestamp(entry.at)) ")? "
            "The revert is a new write, checked and audited like any other."
        }
        (diff(&entry))
        @match &previewed {
            Ok(reverted) => {
                @if let Some(preview) = &reverted.preview { (super::edit::summary(preview)) }
                form method="post" action=(format!("/ui/audit/{}/revert", entry.revision)) {
                    input type="hidden" name="csrf" value=(session.csrf);
                    @if let Some(preview) = reverted.preview.as_ref().filter(|p| p.blast_radius.needs_confirm) {
                        label {
                            "Confirm the number of clusters that lose inputs (" (preview.blast_radius.clusters_shrunk) ")"
                            input type="number" name="confirm" min="0" required;
                        }
                    }
                    @if let Some(preview) = reverted.preview.as_ref().filter(|p| p.window_closed.clusters > 0) {
                        label {
                            "Confirm the number of closed clusters to change (" (preview.window_closed.clusters) ")"
                            input type="number" name="confirm_closed" min="0" required;
                        }
                    }
                    p { button type="submit" { "Revert revision " (entry.revision) } " " a href="/ui/audit" { "Cancel" } }
                }
            }
            Err(err) => {
                p.notice.error role="alert" {
                    "This revision cannot be reverted now: "
                    @match err {
                        crate::error::AppError::Internal(_) => "a server fault (see the server log)",
                        other => (other.to_string()),
                    }
                }
                p { a href="/ui/audit" { "Back to the audit trail" } }
            }
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
    let options = crate::store::RevertOptions {
        confirm,
        confirm_closed,
        dry_run: false,
    };
    match store.revert(revision, session.actor(), options).await {
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
        assert_eq!(names, vec!["labels.x", "node_count", "vm_image"]);
        assert_eq!(fields[1].2, None, "node_count is gone after");
        assert_eq!(
            changed_fields(None, Some(&after)).len(),
            3,
            "a create lists every field"
        );
    }

    #[test]
    fn a_tag_typo_in_one_component_is_one_line() {
        let before = json!({"platform_components": [
            {"id": "cert-manager", "oci_tag": null, "enabled": true},
            {"id": "traefik", "oci_tag": "33.2.1", "enabled": true}]});
        let after = json!({"platform_components": [
            {"id": "cert-manager", "oci_tag": null, "enabled": true},
            {"id": "traefik", "oci_tag": "33.2.l", "enabled": true},
            {"id": "loki", "enabled": true}]});
        let fields = changed_fields(Some(&before), Some(&after));
        assert_eq!(
            fields,
            vec![
                (
                    "platform_components[traefik].oci_tag".to_owned(),
                    Some("\"33.2.1\"".to_owned()),
                    Some("\"33.2.l\"".to_owned())
                ),
                (
                    "platform_components[loki]".to_owned(),
                    None,
                    Some(r#"{"id":"loki","enabled":true}"#.to_owned())
                ),
            ]
        );
    }

    #[test]
    fn a_write_over_many_clusters_shows_its_first_fields_and_counts_the_rest() {
        let side = |tag: &str| {
            let entries = (0..250).map(|i| (format!("c{i:03}"), json!({"oci_tag": tag})));
            Value::Object(entries.collect())
        };
        let html = field_table(Some(&side("1")), Some(&side("2"))).into_string();
        assert_eq!(html.matches("<code>c").count(), SHOWN_FIELDS);
        assert!(html.contains("… and 50 more"), "{html}");
    }
}
