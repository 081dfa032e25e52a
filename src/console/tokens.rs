//! The tokens page: named tokens listed (never their values), created (the value shown once),
//! revoked. Write-token sessions only: who may read is the inventory's business.

use maud::html;
use poem::http::StatusCode;
use poem::web::{Data, Path, Redirect};
use poem::{Body, IntoResponse, Request, Response, handler};
use serde::Deserialize;

use super::layout::{Section, page};
use super::pages::{can_write, error_page, failure, html_response, session_of, write_form};
use crate::domain::report::format_timestamp;
use crate::store::Store;
use crate::store::audit::Change;
use crate::store::tokens;

#[handler]
pub async fn tokens_page(req: &Request, Data(store): Data<&Store>) -> Response {
    let Some(session) = session_of(req) else {
        return Redirect::see_other("/ui/login").into_response();
    };
    if !can_write(req, session) {
        return error_page(
            StatusCode::FORBIDDEN,
            "tokens are managed with the write token",
        );
    }
    let listed = match store.read(tokens::list).await {
        Ok(listed) => listed,
        Err(err) => return failure(err),
    };
    let body = html! {
        @if listed.is_empty() { p.muted { "No named token yet." } }
        table {
            thead { tr { th { "Name" } th { "May read" } th { "Created" } th { "Last used" } th { span.muted { "Revoke" } } } }
            tbody {
                @for token in &listed {
                    tr {
                        td { code { (token.name) } }
                        td { @match &token.cluster { Some(c) => { "cluster " a href=(format!("/ui/clusters/{c}")) { (c) } }, None => "every read route" } }
                        td { (format_timestamp(token.created_at)) }
                        td { @match token.last_used_at { Some(at) => (format_timestamp(at)), None => span.muted { "never" } } }
                        td {
                            form method="post" action=(format!("/ui/tokens/{}/revoke", token.name)) {
                                input type="hidden" name="csrf" value=(session.csrf);
                                button.secondary type="submit" { "Revoke " (token.name) }
                            }
                        }
                    }
                }
            }
        }
        h2 { "New token" }
        form.filters method="post" action="/ui/tokens" {
            input type="hidden" name="csrf" value=(session.csrf);
            label { "Name" input type="text" name="name" required pattern="[a-z0-9._-]{1,63}"; }
            label { "Cluster id (empty: every read route)" input type="text" name="cluster"; }
            button type="submit" { "Create" }
        }
    };
    html_response(
        StatusCode::OK,
        page("Tokens", Section::Tokens, Some(session), body),
    )
}

#[derive(Deserialize)]
struct NewTokenForm {
    name: String,
    #[serde(default)]
    cluster: String,
}

#[handler]
pub async fn create(req: &Request, Data(store): Data<&Store>, body: Body) -> Response {
    let (form, session) = match write_form::<NewTokenForm>(req, body).await {
        Ok(posted) => posted,
        Err(response) => return *response,
    };
    let change = Change {
        actor: session.actor(),
        method: "POST",
    };
    let name = form.name.trim().to_owned();
    let cluster = Some(form.cluster.trim().to_owned()).filter(|c| !c.is_empty());
    let token = match store.create_token(change, name.clone(), cluster).await {
        Ok(token) => token,
        Err(err) => return failure(err),
    };
    let body = html! {
        p.notice role="status" {
            "Token " code { (name) } " created. Copy it now: it is shown this once and only its SHA-256 is kept."
        }
        pre { (token) }
        p { a href="/ui/tokens" { "Back to the tokens" } }
    };
    html_response(
        StatusCode::CREATED,
        page("Token created", Section::Tokens, Some(session), body),
    )
}

#[handler]
pub async fn revoke(
    req: &Request,
    Data(store): Data<&Store>,
    Path(name): Path<String>,
    body: Body,
) -> Response {
    let (_, session) = match write_form::<super::pages::CsrfForm>(req, body).await {
        Ok(posted) => posted,
        Err(response) => return *response,
    };
    let change = Change {
        actor: session.actor(),
        method: "DELETE",
    };
    if let Err(err) = store.revoke_token(change, name).await {
        return failure(err);
    }
    Redirect::see_other("/ui/tokens").into_response()
}
