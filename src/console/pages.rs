//! The console's pages: sign-in and sign-out, the fleet, one cluster.

use std::collections::{BTreeMap, HashMap};

use maud::{Markup, html};
use poem::http::{StatusCode, header};
use poem::web::{Data, Path, Query, Redirect};
use poem::{Body, IntoResponse, Request, Response, handler};
use serde::Deserialize;

use super::csrf_refusal;
use super::edit;
use super::layout::{self, Section, page};
use super::session::{self, Access, Credential, Session, Sessions};
use crate::auth::{self, Identity, Tokens};
use crate::domain::model::{Cluster, Environment};
use crate::domain::report::State;
use crate::store::Store;
use crate::store::clusters::{Browse, Browsed};
use crate::store::convergence::Scope;
use crate::store::feeds::Feed;

/// A form without a session (sign-in, sign-out) is small: a token, a CSRF field.
const FORM_LIMIT: usize = 16 * 1024;
/// A write form may carry a whole cluster as JSON, which the API takes up to its body
/// limit; URL-encoded, every byte may take three.
const WRITE_FORM_LIMIT: usize = 3 * crate::config::MAX_WRITE_BODY_BYTES + FORM_LIMIT;
/// Clusters per fleet page.
pub const FLEET_PAGE: u32 = 50;

/// A page for an error, in the console's frame.
pub fn error_page(status: StatusCode, message: &str) -> Response {
    let title = status.canonical_reason().unwrap_or("Error");
    let body = html! { p.notice.error role="alert" { (message) } p { a href="/ui/" { "Back to the fleet" } } };
    html_response(status, page(title, Section::None, None, body))
}

pub(super) fn html_response(status: StatusCode, markup: Markup) -> Response {
    markup
        .into_string()
        .with_content_type("text/html; charset=utf-8")
        .with_status(status)
        .into_response()
}

/// A form's bytes, read within the body timeout and at most `limit` of them, after checking
/// that a browser sent it from a console page: `Sec-Fetch-Site` (when sent) says same-origin,
/// and `Origin` (when sent and not `null`, which a browser sends under this console's
/// `Referrer-Policy: no-referrer`) is this server.
async fn form_bytes(req: &Request, body: Body, limit: usize) -> Result<Vec<u8>, Response> {
    let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok());
    let host = header("host");
    let same_site =
        header("sec-fetch-site").is_none_or(|site| site == "same-origin" || site == "none");
    let same_origin = header("origin").is_none_or(|origin| {
        origin == "null"
            || origin
                .split_once("://")
                .is_some_and(|(_, authority)| Some(authority) == host)
    });
    if !same_site || !same_origin {
        return Err(error_page(
            StatusCode::FORBIDDEN,
            "this form was posted from another site (Origin or Sec-Fetch-Site is not this server)",
        ));
    }
    let timeout = req
        .data::<crate::config::Limits>()
        .map_or(crate::config::Limits::default().body_timeout, |l| {
            l.body_timeout
        });
    match tokio::time::timeout(timeout, body.into_bytes_limit(limit)).await {
        Ok(Ok(bytes)) => Ok(bytes.to_vec()),
        Ok(Err(poem::error::ReadBodyError::PayloadTooLarge)) => Err(error_page(
            StatusCode::PAYLOAD_TOO_LARGE,
            &format!("the form is larger than {} KiB", limit / 1024),
        )),
        Ok(Err(err)) => Err(error_page(
            StatusCode::BAD_REQUEST,
            &format!("cannot read the form: {err}"),
        )),
        Err(_) => Err(error_page(
            StatusCode::REQUEST_TIMEOUT,
            &format!("the form did not arrive within {} s", timeout.as_secs()),
        )),
    }
}

pub(super) async fn form<T: for<'de> Deserialize<'de>>(
    req: &Request,
    body: Body,
) -> Result<T, Response> {
    let bytes = form_bytes(req, body, FORM_LIMIT).await?;
    serde_urlencoded::from_bytes(&bytes)
        .map_err(|err| error_page(StatusCode::BAD_REQUEST, &format!("unreadable form: {err}")))
}

pub(super) fn session_of(req: &Request) -> Option<&Session> {
    req.extensions().get::<Session>()
}

// ---------------------------------------------------------------------------------------
// Sign-in and sign-out

fn login_page(status: StatusCode, problem: Option<&str>) -> Response {
    let body = html! {
        div.login {
            @if let Some(problem) = problem { p.notice.error role="alert" { (problem) } }
            form method="post" action="/ui/login" {
                label {
                    "Token"
                    input type="password" name="token" autocomplete="current-password" required autofocus;
                }
                button type="submit" { "Sign in" }
            }
            p.muted {
                "The read token shows the fleet; the write token also edits it. A cluster's own \
                 token cannot sign in. The token is checked once and never kept: the session \
                 lives on the server, its cookie holds a random id."
            }
        }
    };
    html_response(status, page("Sign in", Section::None, None, body))
}

#[handler]
pub fn login_form() -> Response {
    login_page(StatusCode::OK, None)
}

#[derive(Deserialize)]
struct LoginForm {
    token: String,
}

#[handler]
pub async fn login(req: &Request, body: Body) -> Response {
    let form: LoginForm = match form(req, body).await {
        Ok(form) => form,
        Err(response) => return response,
    };
    let token = form.token.trim();
    let identity = match auth::identify(req, token).await {
        Ok(identity) => identity,
        Err(err) => return error_page(err.status(), "tokens cannot be checked right now; retry"),
    };
    let configured = req.data::<Tokens>().is_some_and(|t| t.allows_read(token));
    let (access, credential) = match identity {
        Some(Identity::Write) => (Access::Write, Credential::Configured),
        Some(Identity::Fleet) if configured => (Access::Read, Credential::Configured),
        Some(Identity::Fleet) => {
            let name = match req.data::<Store>() {
                Some(store) => store.tokens().check(store, token).await.ok().flatten(),
                None => None,
            };
            let Some(grant) = name else {
                return login_page(StatusCode::UNAUTHORIZED, Some("That token is not valid."));
            };
            (
                Access::Read,
                Credential::Named {
                    name: grant.name,
                    digest: crate::store::tokens::raw_digest(token),
                },
            )
        }
        Some(Identity::Cluster { .. }) => {
            return login_page(
                StatusCode::FORBIDDEN,
                Some("A cluster's own token reads that cluster's feeds only; it cannot sign in."),
            );
        }
        None => return login_page(StatusCode::UNAUTHORIZED, Some("That token is not valid.")),
    };
    let Some(sessions) = req.data::<Sessions>() else {
        return error_page(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the console has no session store",
        );
    };
    let (id, _) = sessions.open(access, credential);
    // Under TLS the cookie never travels in clear.
    let secure = *req.scheme() == poem::http::uri::Scheme::HTTPS;
    let cookie = format!(
        "{}={id}; Path=/ui; HttpOnly; SameSite=Strict; Max-Age={}{}",
        session::COOKIE,
        session::IDLE.as_secs(),
        if secure { "; Secure" } else { "" }
    );
    Redirect::see_other("/ui/")
        .with_header(header::SET_COOKIE, cookie)
        .into_response()
}

#[derive(Deserialize)]
pub(super) struct CsrfForm {
    #[serde(default)]
    pub csrf: String,
}

/// The session of a form post that writes: a write-token session on a crud-mode server,
/// with the form's CSRF token; else the page that says why not.
pub(super) fn writer<'r>(req: &'r Request, csrf: &str) -> Result<&'r Session, Box<Response>> {
    let Some(session) = session_of(req) else {
        return Err(Box::new(Redirect::see_other("/ui/login").into_response()));
    };
    if let Some(refused) = super::csrf_refusal(session, csrf) {
        return Err(Box::new(refused));
    }
    let writable = req
        .data::<super::ConsoleSettings>()
        .is_some_and(|settings| settings.writable);
    if !writable {
        return Err(Box::new(error_page(
            StatusCode::FORBIDDEN,
            "this server runs read-only (api_mode = read-only): the console cannot change anything here",
        )));
    }
    if session.access != Access::Write {
        return Err(Box::new(error_page(
            StatusCode::FORBIDDEN,
            "this session reads only: sign in with the write token to change the inventory",
        )));
    }
    Ok(session)
}

/// A form that writes: the session allowed to post it (CSRF token, write session, crud
/// server — checked before anything else is read from it) and its fields; else the page
/// that says why not.
pub(super) async fn write_form<T: serde::de::DeserializeOwned>(
    req: &Request,
    body: Body,
) -> Result<(T, &Session), Box<Response>> {
    let bytes = form_bytes(req, body, WRITE_FORM_LIMIT)
        .await
        .map_err(Box::new)?;
    let unreadable = |err: serde_urlencoded::de::Error| {
        Box::new(error_page(
            StatusCode::BAD_REQUEST,
            &format!("unreadable form: {err}"),
        ))
    };
    let csrf: CsrfForm = serde_urlencoded::from_bytes(&bytes).map_err(unreadable)?;
    let session = writer(req, &csrf.csrf)?;
    let fields = serde_urlencoded::from_bytes(&bytes).map_err(unreadable)?;
    Ok((fields, session))
}

/// Whether this session may see write forms.
pub(super) fn can_write(req: &Request, session: &Session) -> bool {
    session.access == Access::Write
        && req
            .data::<super::ConsoleSettings>()
            .is_some_and(|settings| settings.writable)
}

/// An error of the store as a page.
pub(super) fn failure(err: crate::error::AppError) -> Response {
    use crate::error::AppError;
    let status = match &err {
        AppError::BadRequest(_) => StatusCode::BAD_REQUEST,
        AppError::NotFound(_) => StatusCode::NOT_FOUND,
        AppError::Conflict(_) | AppError::BlastRadius(_) | AppError::WindowClosed(_) => {
            StatusCode::CONFLICT
        }
        AppError::Validation(_) => StatusCode::UNPROCESSABLE_ENTITY,
        AppError::PreconditionFailed(_) => StatusCode::PRECONDITION_FAILED,
        AppError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        AppError::Internal(message) => {
            tracing::error!(error = %message, "console request failed");
            return error_page(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal error; see the server log",
            );
        }
    };
    error_page(status, &err.to_string())
}

#[handler]
pub async fn logout(req: &Request, body: Body) -> Response {
    let Some(session) = session_of(req) else {
        return Redirect::see_other("/ui/login").into_response();
    };
    let form: CsrfForm = match form(req, body).await {
        Ok(form) => form,
        Err(response) => return response,
    };
    if let Some(refused) = csrf_refusal(session, &form.csrf) {
        return refused;
    }
    if let (Some(sessions), Some(id)) =
        (req.data::<Sessions>(), session::cookie_value(req.headers()))
    {
        sessions.close(&id);
    }
    let clear = format!(
        "{}=; Path=/ui; HttpOnly; SameSite=Strict; Max-Age=0",
        session::COOKIE
    );
    Redirect::see_other("/ui/login")
        .with_header(header::SET_COOKIE, clear)
        .into_response()
}

// ---------------------------------------------------------------------------------------
// The fleet

#[derive(Deserialize, Default)]
pub struct FleetQuery {
    /// Part of an id, name, DNS name or `key=value` label.
    #[serde(default)]
    q: String,
    #[serde(default)]
    environment: String,
    /// `failing`: clusters with a reported failure; `stale`; `closed`: clusters a maintenance
    /// window closes now.
    #[serde(default)]
    show: String,
    /// Only clusters running this component…
    #[serde(default)]
    component: String,
    /// …with this version desired or reported.
    #[serde(default)]
    version: String,
    #[serde(default)]
    offset: u32,
}

/// The fleet's numbers above the list, each a filter.
struct Glance {
    clusters: u64,
    failing: u64,
    stale: u64,
    closed: u64,
}

/// One row of the fleet page: the cluster and its components per state.
struct FleetRow {
    cluster: Browsed,
    counts: Vec<(State, u64)>,
    worst: Option<State>,
    last_poll: Option<u64>,
    /// The maintenance windows that close it now.
    closed_by: Option<Vec<String>>,
}

/// Most urgent first: what a person should look at.
fn urgency(state: State) -> u8 {
    match state {
        State::Failed => 0,
        State::Stale => 1,
        State::Progressing => 2,
        State::Unknown => 3,
        State::Converged => 4,
        State::Disabled => 5,
    }
}

#[handler]
pub async fn fleet_page(
    req: &Request,
    Data(store): Data<&Store>,
    Query(query): Query<FleetQuery>,
) -> Response {
    let Some(session) = session_of(req) else {
        return Redirect::see_other("/ui/login").into_response();
    };
    let mut browse = Browse {
        search: Some(query.q.trim().to_ascii_lowercase()).filter(|q| !q.is_empty()),
        environment: Environment::parse(&query.environment),
        failing: query.show == "failing",
        only: None,
        next: Vec::new(),
        limit: FLEET_PAGE,
        offset: query.offset,
    };
    let show = query.show.clone();
    let given = |text: &str| Some(text.trim().to_owned()).filter(|t| !t.is_empty());
    let (component, version) = (given(&query.component), given(&query.version));
    let polls = store.polls().clone();
    let now = store.clock().now_u64();
    let found = store
        .read(move |conn| {
            let closed = crate::store::windows::closed(conn, now as i64, None)?;
            // The fleet at a glance: every cluster, failing, stale, closed (each a filter).
            let stale = crate::store::clusters::ids_where(conn, |dns| polls.is_stale_of(dns, now))?;
            let glance = Glance {
                clusters: crate::store::clusters::count(conn)? as u64,
                failing: crate::store::clusters::failing_count(conn)?,
                stale: stale.len() as u64,
                closed: closed.len() as u64,
            };
            browse.next = stale.clone();
            match show.as_str() {
                "closed" => browse.only = Some(closed.keys().cloned().collect()),
                "stale" => browse.only = Some(stale),
                _ => {}
            }
            if let Some(component) = component.clone() {
                // Clusters with the component (its version desired or reported, if given),
                // within what the other filters chose.
                let scope = Scope {
                    component: Some(component),
                    // Reports matter only for a version (desired or reported).
                    desired_only: version.is_none(),
                    ..Scope::default()
                };
                let mut running = Vec::new();
                crate::store::convergence::for_each_component(conn, &scope, &polls, now, |row| {
                    let on_version = version
                        .as_deref()
                        .is_none_or(|v| row.desired == v || row.reported_revision == Some(v));
                    if row.enabled && on_version {
                        running.push(row.cluster_id.to_owned());
                    }
                })?;
                browse.only = Some(match browse.only.take() {
                    Some(chosen) => {
                        let chosen: std::collections::HashSet<String> =
                            chosen.into_iter().collect();
                        running
                            .into_iter()
                            .filter(|id| chosen.contains(id))
                            .collect()
                    }
                    None => running,
                });
            }
            let (total, clusters) = crate::store::clusters::browse(conn, &browse)?;
            // The page's clusters per state, in one walk over the page.
            let page = Scope {
                clusters: Some(clusters.iter().map(|c| c.id.clone()).collect()),
                ..Scope::default()
            };
            let mut states: HashMap<String, BTreeMap<State, u64>> = HashMap::new();
            crate::store::convergence::for_each_component(conn, &page, &polls, now, |row| {
                let counts = match states.get_mut(row.cluster_id) {
                    Some(counts) => counts,
                    None => states.entry(row.cluster_id.to_owned()).or_default(),
                };
                *counts.entry(row.state).or_insert(0) += 1;
            })?;
            let mut rows = Vec::with_capacity(clusters.len());
            for cluster in clusters {
                let counts = states.remove(&cluster.id).unwrap_or_default();
                let worst = counts.keys().copied().min_by_key(|s| urgency(*s));
                let last_poll = polls
                    .get(&cluster.cluster_dns)
                    .iter()
                    .flatten()
                    .map(|p| p.at)
                    .max();
                let mut counts: Vec<(State, u64)> = counts.into_iter().collect();
                counts.sort_by_key(|(state, _)| urgency(*state));
                rows.push(FleetRow {
                    closed_by: closed.get(&cluster.id).cloned(),
                    cluster,
                    counts,
                    worst,
                    last_poll,
                });
            }
            Ok((total, rows, glance))
        })
        .await;
    let (total, rows, glance) = match found {
        Ok(found) => found,
        Err(err) => return error_page(StatusCode::SERVICE_UNAVAILABLE, &err.to_string()),
    };
    let link = |offset: u32| {
        let mut params = vec![("offset", offset.to_string())];
        for (key, value) in [
            ("q", &query.q),
            ("environment", &query.environment),
            ("show", &query.show),
            ("component", &query.component),
            ("version", &query.version),
        ] {
            if !value.is_empty() {
                params.push((key, value.clone()));
            }
        }
        format!(
            "/ui/?{}",
            serde_urlencoded::to_string(&params).unwrap_or_default()
        )
    };
    let first = u64::from(query.offset) + 1;
    let last = u64::from(query.offset) + rows.len() as u64;
    let body = html! {
        p.glance {
            a href="/ui/" { (glance.clusters) " clusters" } " · "
            a href="/ui/?show=failing" { span class="state state-failed" { (glance.failing) " with a reported failure" } } " · "
            a href="/ui/?show=stale" { span class="state state-stale" { (glance.stale) " stale" } }
            @if glance.closed > 0 { " · " a href="/ui/?show=closed" { (glance.closed) " closed by a maintenance window" } }
        }
        form.filters method="get" action="/ui/" role="search" {
            label { "Search" input type="search" name="q" value=(query.q) placeholder="id, name, DNS or key=value"; }
            label {
                "Environment"
                select name="environment" {
                    option value="" { "all" }
                    @for env in ["dev", "qa", "uat", "prod"] {
                        option value=(env) selected[query.environment == env] { (env) }
                    }
                }
            }
            label {
                "Show"
                select name="show" {
                    option value="" { "every cluster" }
                    option value="failing" selected[query.show == "failing"] { "clusters with a reported failure" }
                    option value="stale" selected[query.show == "stale"] { "stale clusters (no poll within poll_stale_after)" }
                    option value="closed" selected[query.show == "closed"] { "clusters a maintenance window closes now" }
                }
            }
            label { "Component" input type="search" name="component" value=(query.component) placeholder="traefik"; }
            label { "Version" input type="search" name="version" value=(query.version) placeholder="33.2.1"; }
            button type="submit" { "Filter" }
        }
        @if rows.is_empty() {
            p.notice { "No cluster matches." }
        } @else {
            p.muted { "Clusters " (first) "–" (last) " of " (total) }
            table.compact {
                thead { tr { th { "Cluster" } th { "Environment" } th { "Labels" } th { "Last poll" } th { "Components" } } }
                tbody {
                    @for row in &rows {
                        tr {
                            td {
                                a href=(format!("/ui/clusters/{}", row.cluster.id)) title=(row.cluster.cluster_dns) { (row.cluster.id) }
                                @if let Some(windows) = &row.closed_by {
                                    " " span.label title=(format!("closed by {}", windows.join(", "))) { "closed" }
                                }
                            }
                            td { (row.cluster.environment.as_str()) }
                            td { @for (key, value) in &row.cluster.labels {
                                a.label href=(format!("/ui/?{}", serde_urlencoded::to_string([("q", format!("{key}={value}"))]).unwrap_or_default())) { (key) "=" (value) }
                            } }
                            td {
                                @match row.last_poll {
                                    Some(at) => (layout::age(now.saturating_sub(at))),
                                    None => span.muted { "never" },
                                }
                            }
                            td {
                                @if let Some(worst) = row.worst { (layout::state(worst.as_str())) " " }
                                span.muted {
                                    @for (i, (state, n)) in row.counts.iter().enumerate() {
                                        @if i > 0 { " · " }
                                        (n) " " (state.as_str())
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        nav.pager aria-label="Pages" {
            @if query.offset > 0 {
                a href=(link(query.offset.saturating_sub(FLEET_PAGE))) { "← Previous" }
            }
            @if last < total {
                a href=(link(query.offset + FLEET_PAGE)) { "Next →" }
            }
        }
    };
    html_response(
        StatusCode::OK,
        page("Fleet", Section::Fleet, Some(session), body),
    )
}

// ---------------------------------------------------------------------------------------
// One cluster

#[derive(Deserialize, Default)]
pub struct ClusterQuery {
    /// The revision of an edit just saved.
    saved: Option<i64>,
}

#[handler]
pub async fn cluster_page(
    req: &Request,
    Data(store): Data<&Store>,
    Path(id): Path<String>,
    Query(query): Query<ClusterQuery>,
) -> Response {
    let Some(session) = session_of(req) else {
        return Redirect::see_other("/ui/login").into_response();
    };
    let lookup = id.clone();
    let at = store.clock().now();
    let found = store
        .read(move |conn| {
            let Some(cluster) = crate::store::clusters::get(conn, &lookup)? else {
                return Ok(None);
            };
            let layers = crate::store::overlays::effective_view(conn, &lookup)?;
            let windows = crate::store::windows::for_cluster(conn, &lookup, at)?;
            let catalog: Vec<String> =
                crate::store::components::list(conn, None, crate::store::Page::default())?
                    .into_iter()
                    .map(|c| c.id)
                    .collect();
            Ok(Some((cluster, layers, windows, catalog)))
        })
        .await;
    let (cluster, layers, windows, catalog) = match found {
        Ok(Some(found)) => found,
        Ok(None) => {
            return error_page(StatusCode::NOT_FOUND, &format!("no cluster with id '{id}'"));
        }
        Err(err) => return error_page(StatusCode::SERVICE_UNAVAILABLE, &err.to_string()),
    };
    let mut convergence =
        match crate::store::convergence::cluster_convergence(store, cluster.clone()).await {
            Ok(view) => view,
            Err(err) => return error_page(StatusCode::SERVICE_UNAVAILABLE, &err.to_string()),
        };
    // What needs a look first: failing, then stale and progressing, in feed order within.
    convergence.components.sort_by_key(|c| urgency(c.state));
    let mut per_state: Vec<(State, usize)> = Vec::new();
    for c in &convergence.components {
        match per_state.iter_mut().find(|(s, _)| *s == c.state) {
            Some((_, n)) => *n += 1,
            None => per_state.push((c.state, 1)),
        }
    }
    let mut feeds = Vec::new();
    for feed in Feed::ALL {
        let text = match store.feed(&cluster.cluster_dns, feed).await {
            Ok(bytes) => pretty(&bytes),
            Err(err) => format!("({err})"),
        };
        feeds.push((feed.segment(), text));
    }
    let now = store.clock().now_u64();
    let body = html! {
        @if let Some(revision) = query.saved {
            p.notice role="status" { "Saved as audit revision " (revision) ". " a href="/ui/audit" { "See it in the audit trail" } }
        }
        dl.facts {
            dt { "DNS name" } dd { code { (cluster.cluster_dns) } }
            dt { "Name" } dd { (cluster.cluster_name) }
            dt { "Environment" } dd { (cluster.environment.as_str()) }
            dt { "Labels" } dd { @for (key, value) in &cluster.labels { span.label { (key) "=" (value) } } }
            dt { "Polls" } dd {
                @if convergence.stale { (layout::state("stale")) " " }
                @for (feed, poll) in [("platform-components", &convergence.polls.platform_components), ("namespaces", &convergence.polls.namespaces), ("rolebindings", &convergence.polls.rolebindings)] {
                    span.label { (feed) ": " @match poll { Some(p) => (layout::age(now.saturating_sub(p.at))), None => "never" } }
                }
            }
            @if let Some(version) = &convergence.operator_version { dt { "Flux Operator" } dd { (version) } }
            @if !windows.windows.is_empty() {
                dt { "Changes" } dd {
                    @if windows.open { "allowed now" } @else {
                        strong { "not allowed now" } " (" (windows.closed_by.join(", ")) ")"
                    }
                    @if let (Some(next), Some(at)) = (windows.next_change, &windows.next_change_at) {
                        " · " @if windows.open { "closes" } @else { "opens" } " "
                        time datetime=(at) title=(at) { (layout::ahead(next.saturating_sub(now as i64).max(0) as u64)) }
                    }
                    br; span.muted { "Windows: " @for (i, w) in windows.windows.iter().enumerate() {
                        @if i > 0 { ", " } (w.id) " (" (w.kind.as_str()) @if w.active { ", active" } ")"
                    } }
                }
            }
        }
        h2 { "Components: desired and reported" }
        p {
            @for (i, (state, n)) in per_state.iter().enumerate() {
                @if i > 0 { " · " }
                (n) " " (layout::state(state.as_str()))
            }
        }
        table {
            thead { tr { th { "Component" } th { "Desired" } th { "Reported" } th { "State" } th { "Reason" } th { "Event" } } }
            tbody {
                @for c in &convergence.components {
                    tr {
                        td { (c.component) @if !c.enabled { " " span.muted { "(disabled)" } } }
                        td { code { (c.desired_version) } }
                        td { @if let Some(r) = &c.reported_revision { code { (r) } } }
                        td { (layout::state(c.state.as_str())) }
                        td {
                            @if let Some(reason) = &c.reason { (reason) }
                            @if let Some(message) = &c.message { br; span.muted { (message) } }
                        }
                        td { @if let Some(at) = &c.event_time {
                            @match at.parse::<jiff::Timestamp>() {
                                Ok(t) => time datetime=(at) title=(at) { (layout::age(now.saturating_sub(t.as_second().max(0) as u64))) },
                                Err(_) => (at),
                            }
                        } }
                    }
                }
            }
        }
        h2 { "Values and where they come from" }
        p.muted {
            "Each value as the feeds carry it, and the layer that set it: the catalog, an overlay ("
            @if layers.overlays.is_empty() { "none matches this cluster" } @else {
                "here: " @for (i, o) in layers.overlays.iter().enumerate() { @if i > 0 { ", " } a href=(format!("/ui/overlays/{o}")) { (o) } }
            }
            ") or the cluster itself."
        }
        table {
            thead { tr { th { "Component" } th { "Enabled" } th { "oci_tag" } th { "component_path" } th { "Patches" } } }
            tbody {
                @for c in &layers.platform_components {
                    tr {
                        td { (c.id) }
                        td { (c.enabled.value.to_string()) " " (layer(&c.enabled.from)) }
                        td { code { (c.oci_tag.value.as_str().unwrap_or_default()) } " " (layer(&c.oci_tag.from)) }
                        td { code { (c.component_path.value.as_str().unwrap_or_default()) } " " (layer(&c.component_path.from)) }
                        td { @for (key, value) in &c.patches { code { (key) "=" (value.value.to_string()) } " " (layer(&value.from)) br; } }
                    }
                }
            }
        }
        @let added: Vec<_> = layers.namespaces.iter().chain(&layers.rolebindings).filter(|r| r.from != "cluster").collect();
        @if !added.is_empty() {
            p { "Added by overlays: " @for r in &added { (r.id) " " (layer(&r.from)) " " } }
        }
        @if !cluster.patches.is_empty() {
            h2 { "Helm value patches" }
            table {
                thead { tr { th { "Component" } th { "Key" } th { "Value" } } }
                tbody {
                    @for (component, patch) in &cluster.patches {
                        @for (key, value) in patch {
                            tr { td { (component) } td { code { (key) } } td { code { (value.to_string()) } } }
                        }
                    }
                }
            }
        }
        h2 { "Feeds, as Flux receives them" }
        @for (feed, text) in &feeds {
            details {
                summary { (feed) }
                pre { (text) }
            }
        }
        @if can_write(req, session) {
            h2 { "Edit" }
            (super::cluster_form::render(
                session,
                &cluster,
                &catalog,
                edit::form(session, &format!("/ui/clusters/{}", cluster.id), "The cluster", &cluster),
            ))
        }
        h2 { "Last events" }
        @if convergence.events.is_empty() {
            p.muted { "No event received from this cluster." }
        } @else {
            table {
                thead { tr { th { "Time" } th { "Object" } th { "Reason" } th { "Message" } } }
                tbody {
                    @for e in convergence.events.iter().take(20) {
                        tr {
                            td { (e.time) }
                            td { (e.kind) " " (e.namespace) "/" (e.name) }
                            td { @if e.severity == "error" { strong { (e.reason) } } @else { (e.reason) } }
                            td { (e.message) }
                        }
                    }
                }
            }
        }
    };
    let title = format!("Cluster {}", cluster.id);
    html_response(
        StatusCode::OK,
        page(&title, Section::Fleet, Some(session), body),
    )
}

/// The layer a value came from, as a small label (`overlay:<id>` links to the overlay).
fn layer(from: &str) -> Markup {
    match from.strip_prefix("overlay:") {
        Some(id) => {
            html! { span.label { "overlay " a href=(format!("/ui/overlays/{id}")) { (id) } } }
        }
        None => html! { span.label.muted { (from) } },
    }
}

/// A feed's bytes, indented for reading (same content and key order).
fn pretty(bytes: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(bytes)
        .ok()
        .and_then(|value| serde_json::to_string_pretty(&value).ok())
        .unwrap_or_else(|| String::from_utf8_lossy(bytes).into_owned())
}

/// What a cluster edit would change for Flux, before it is saved.
#[handler]
pub async fn preview_edit(
    req: &Request,
    Data(store): Data<&Store>,
    Path(id): Path<String>,
    body: Body,
) -> Response {
    edit::preview::<Cluster>(req, store, id, body, "/ui/clusters", Section::Fleet).await
}

#[handler]
pub async fn save_edit(
    req: &Request,
    Data(store): Data<&Store>,
    Path(id): Path<String>,
    body: Body,
) -> Response {
    edit::save::<Cluster>(req, store, id, body, "/ui/clusters", Section::Fleet).await
}
