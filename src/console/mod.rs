//! The web console (README, "Web console"): server-rendered pages under `/ui/`, built into the binary
//! (maud templates, one stylesheet, no script, nothing from another host). Reading works
//! without JavaScript; forms post back with the session's CSRF token.
//!
//! Reading order: `routes` (below), `session.rs` (sign-in, cookies, CSRF), `layout.rs` (the
//! frame of every page), `pages.rs`.

pub mod audit;
pub mod catalog;
pub mod cluster_form;
pub mod component;
pub mod edit;
pub mod layout;
pub mod overlays;
pub mod pages;
pub mod rollouts;
pub mod session;
pub mod tokens;

use std::sync::Arc;

use poem::http::{StatusCode, header};
use poem::web::Redirect;
use poem::{Endpoint, EndpointExt, IntoResponse, Request, Response, Route, get, post};

pub use session::{Access, Credential, Session, Sessions};

use crate::store::Store;

/// What the console needs to know of the server it runs in.
#[derive(Clone, Copy, Debug, Default)]
pub struct ConsoleSettings {
    /// crud mode: writes are possible (for a write-token session).
    pub writable: bool,
}

/// Every `/ui/` route (nested under `/ui` by the application).
pub fn routes() -> impl Endpoint<Output = Response> {
    Route::new()
        .at("/", get(pages::fleet_page))
        .at("/login", get(pages::login_form).post(pages::login))
        .at("/logout", post(pages::logout))
        .at("/clusters/:id", get(pages::cluster_page))
        .at("/clusters/:id/preview", post(pages::preview_edit))
        .at("/clusters/:id/save", post(pages::save_edit))
        .at("/catalog", get(catalog::catalog_page))
        .at("/components/:id", get(component::component_page))
        .at("/overlays", get(overlays::overlays_page))
        .at("/overlays/:id", get(overlays::overlay_page))
        .at("/overlays/:id/preview", post(overlays::preview_edit))
        .at("/overlays/:id/save", post(overlays::save_edit))
        .at("/rollouts", get(rollouts::rollouts_page))
        .at("/rollouts/plan", post(rollouts::plan))
        .at("/rollouts/create", post(rollouts::create))
        .at("/rollouts/:id", get(rollouts::rollout_page))
        .at(
            "/rollouts/:id/:verb",
            get(rollouts::confirm_page).post(rollouts::act),
        )
        .at("/audit", get(audit::audit_page))
        .at(
            "/audit/:revision/revert",
            get(audit::revert_form).post(audit::revert),
        )
        .at("/tokens", get(tokens::tokens_page).post(tokens::create))
        .at("/tokens/:name/revoke", post(tokens::revoke))
        .at("/static/console.css", get(stylesheet))
        .at("/static/favicon.svg", get(favicon))
        .at("/static/follow.js", get(follow_script))
        .around(signed_in)
        .around(page_headers)
}

/// The stylesheet, compiled in.
#[poem::handler]
fn stylesheet() -> Response {
    include_str!("../../assets/console.css")
        .with_content_type("text/css; charset=utf-8")
        .with_header(header::CACHE_CONTROL, "max-age=3600")
        .into_response()
}

/// The one script: reloads a page that follows a running rollout (`layout::refreshing_page`).
#[poem::handler]
fn follow_script() -> Response {
    include_str!("../../assets/follow.js")
        .with_content_type("text/javascript; charset=utf-8")
        .with_header(header::CACHE_CONTROL, "max-age=3600")
        .into_response()
}

/// The tab icon, compiled in (a browser asks for one; without it, a 404 on every page).
#[poem::handler]
fn favicon() -> Response {
    include_str!("../../assets/favicon.svg")
        .with_content_type("image/svg+xml")
        .with_header(header::CACHE_CONTROL, "max-age=86400")
        .into_response()
}

/// Pages that need no session.
fn is_public(path: &str) -> bool {
    path == "/login" || path.starts_with("/static/")
}

/// The session of the request's cookie, if it is open and its token still valid.
pub async fn session_from_cookie(req: &Request) -> Option<(String, Session)> {
    let id = session::cookie_value(req.headers())?;
    let sessions = req.data::<Sessions>()?;
    let session = sessions.get(&id)?;
    if let Credential::Named { digest, .. } = &session.credential {
        let store = req.data::<Store>()?;
        // A revoked token ends its sessions at their next request.
        if !store.tokens().knows(store, digest).await.unwrap_or(false) {
            sessions.close_named(digest);
            return None;
        }
    }
    Some((id, session))
}

/// Pages other than sign-in need a session: without one, to the sign-in page.
async fn signed_in<E: Endpoint>(ep: Arc<E>, mut req: Request) -> poem::Result<Response> {
    if is_public(req.uri().path()) {
        return ep.call(req).await.map(IntoResponse::into_response);
    }
    match session_from_cookie(&req).await {
        Some((_, session)) => {
            req.extensions_mut().insert(session);
            ep.call(req).await.map(IntoResponse::into_response)
        }
        None => Ok(Redirect::see_other("/ui/login").into_response()),
    }
}

/// On every console answer: no inline script (the one script is a file of our own), no
/// framing, no referrer, nothing cached.
async fn page_headers<E: Endpoint>(ep: Arc<E>, req: Request) -> poem::Result<Response> {
    let mut response = match ep.call(req).await {
        Ok(response) => response.into_response(),
        Err(err) => pages::error_page(err.status(), &err.to_string()),
    };
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        header::HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
             form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    headers.insert(
        header::X_FRAME_OPTIONS,
        header::HeaderValue::from_static("DENY"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        header::HeaderValue::from_static("no-referrer"),
    );
    Ok(response)
}

/// The answer to a form post whose CSRF field is not the session's token, if it is not.
pub fn csrf_refusal(session: &Session, presented: &str) -> Option<Response> {
    (!session.csrf_matches(presented)).then(|| {
        pages::error_page(
            StatusCode::FORBIDDEN,
            "this form is stale or was not sent by this console (CSRF token mismatch): reload \
             the page and try again",
        )
    })
}
