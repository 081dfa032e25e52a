//! The rollouts pages: the list, a new rollout planned before it is created, one rollout's
//! steps with its controls (start, pause, resume, abort, roll back).

use maud::{Markup, html};
use poem::http::StatusCode;
use poem::web::{Data, Path, Redirect};
use poem::{Body, IntoResponse, Request, Response, handler};
use poem_openapi::types::ParseFromJSON;
use serde::Deserialize;

use super::layout::{self, Section, page};
use super::pages::{can_write, error_page, failure, html_response, session_of, write_form};
use crate::domain::rollout::{ClusterState, Rollout, RolloutSpec, Verb};
use crate::store::Store;

/// What the new-rollout form starts with.
const EXAMPLE: &str = include_str!("../../examples/rollouts/cert-manager-v1-17.json");

/// A wave as its selector reads: `canary=true`, `prod, batch 100`.
fn wave_text(rollout: &Rollout, wave: u32) -> String {
    let Some(w) = rollout.spec.waves.get(wave as usize) else {
        return format!("wave {}", wave + 1);
    };
    let mut parts: Vec<String> = Vec::new();
    if let Some(env) = w.environment {
        parts.push(env.as_str().to_owned());
    }
    parts.extend(w.labels.iter().map(|(k, v)| format!("{k}={v}")));
    match w.clusters.len() {
        0 => {}
        1..=3 => parts.push(w.clusters.join(", ")),
        n => parts.push(format!("{n} named clusters")),
    }
    if let Some(batch) = w.batch {
        parts.push(format!("batch {batch}"));
    }
    if parts.is_empty() {
        "every cluster".to_owned()
    } else {
        parts.join(", ")
    }
}

fn step_rows(rollout: &Rollout) -> Markup {
    html! {
        table {
            thead { tr { th { "Step" } th { "Wave" } th { "State" } th { "Clusters" } th { "Passed" } th { "Failed" } th { "Skipped" } th { "Since" } } }
            tbody {
                @for step in &rollout.steps {
                    tr aria-current=[(rollout.current_step == Some(step.step) && rollout.state.is_active()).then_some("step")] {
                        td { (step.step + 1) }
                        td { (wave_text(rollout, step.wave)) }
                        td { (step.state.as_str()) }
                        td {
                            @let total = step.clusters_total();
                            (total)
                            @if !step.clusters.is_empty() && step.clusters.len() <= 12 {
                                br;
                                span.muted { @for (i, c) in step.clusters.iter().enumerate() { @if i > 0 { ", " } (c.id) } }
                            }
                        }
                        td { (step.counts.passed) }
                        td { (step.counts.failed) }
                        td { (step.counts.skipped + step.counts.pinned) }
                        td { @if let Some(at) = &step.started_at { (at) } }
                    }
                }
            }
        }
    }
}

#[handler]
pub async fn rollouts_page(req: &Request, Data(store): Data<&Store>) -> Response {
    let Some(session) = session_of(req) else {
        return Redirect::see_other("/ui/login").into_response();
    };
    let listed = match store.rollouts().await {
        Ok(listed) => listed,
        Err(err) => return failure(err),
    };
    let writes = can_write(req, session);
    let body = html! {
        @if listed.is_empty() { p.muted { "No rollout yet." } }
        table {
            thead { tr { th { "Rollout" } th { "Component" } th { "Target" } th { "State" } th { "Step" } th { "Passed" } th { "Failed" } } }
            tbody {
                @for r in &listed {
                    tr {
                        td { a href=(format!("/ui/rollouts/{}", r.spec.id)) { (r.spec.id) } }
                        td { (r.spec.component) }
                        td { code { (r.spec.target.oci_tag) } }
                        td { (r.state.as_str()) }
                        td { @if let Some(step) = r.current_step { (step + 1) " of " (r.steps.len()) } }
                        td { (r.counts.passed) }
                        td { (r.counts.failed) }
                    }
                }
            }
        }
        @if writes {
            h2 { "New rollout" }
            form method="post" action="/ui/rollouts/plan" {
                input type="hidden" name="csrf" value=(session.csrf);
                label { "Rollout (JSON, as POST /rollouts takes it)" textarea name="spec" rows="16" cols="90" { (EXAMPLE) } }
                p { button type="submit" { "Plan it" } }
            }
        }
    };
    html_response(
        StatusCode::OK,
        page("Rollouts", Section::Rollouts, Some(session), body),
    )
}

#[derive(Deserialize)]
struct SpecForm {
    spec: String,
}

fn parse_spec(text: &str) -> Result<RolloutSpec, Box<Response>> {
    let refuse = |message: String| Box::new(error_page(StatusCode::BAD_REQUEST, &message));
    let value: serde_json::Value = serde_json::from_str(text)
        .map_err(|err| refuse(format!("the rollout is not JSON: {err}")))?;
    RolloutSpec::parse_from_json(Some(value))
        .map_err(|err| refuse(format!("the rollout: {}", err.into_message())))
}

/// The plan first: what the rollout would do, and the button that creates it.
#[handler]
pub async fn plan(req: &Request, Data(store): Data<&Store>, body: Body) -> Response {
    let (form, session) = match write_form::<SpecForm>(req, body).await {
        Ok(posted) => posted,
        Err(response) => return *response,
    };
    let spec = match parse_spec(&form.spec) {
        Ok(spec) => spec,
        Err(response) => return *response,
    };
    let plan = match store.create_rollout(spec, session.actor(), true).await {
        Ok(plan) => plan,
        Err(err) => return failure(err),
    };
    let body = html! {
        p.notice role="status" {
            "Nothing is stored yet. " (plan.steps.len()) " step(s) would move "
            (plan.counts.pending) " cluster(s) to " code { (plan.spec.target.oci_tag) } "."
        }
        (step_rows(&plan))
        @if !plan.not_in_steps.is_empty() {
            h2 { "Not moved" }
            ul { @for c in &plan.not_in_steps { li { (c.id) " — " (c.state.as_str()) } } }
        }
        @if !plan.stale.is_empty() {
            h2 { "Stale now (skipped if still stale when their step starts)" }
            p { (plan.stale.join(", ")) }
        }
        form method="post" action="/ui/rollouts/create" {
            input type="hidden" name="csrf" value=(session.csrf);
            input type="hidden" name="spec" value=(form.spec);
            p { button type="submit" { "Create rollout " (plan.spec.id) } " " a href="/ui/rollouts" { "Cancel" } }
        }
    };
    html_response(
        StatusCode::OK,
        page("Rollout plan", Section::Rollouts, Some(session), body),
    )
}

#[handler]
pub async fn create(req: &Request, Data(store): Data<&Store>, body: Body) -> Response {
    let (form, session) = match write_form::<SpecForm>(req, body).await {
        Ok(posted) => posted,
        Err(response) => return *response,
    };
    let spec = match parse_spec(&form.spec) {
        Ok(spec) => spec,
        Err(response) => return *response,
    };
    match store.create_rollout(spec, session.actor(), false).await {
        Ok(created) => {
            Redirect::see_other(format!("/ui/rollouts/{}", created.spec.id)).into_response()
        }
        Err(err) => failure(err),
    }
}

/// How often a running rollout's page reloads itself.
const FOLLOW_SECONDS: u32 = 10;

#[derive(Deserialize, Default)]
pub struct FollowQuery {
    /// `0`: do not reload the page by itself.
    follow: Option<u8>,
}

#[handler]
pub async fn rollout_page(
    req: &Request,
    Data(store): Data<&Store>,
    Path(id): Path<String>,
    poem::web::Query(query): poem::web::Query<FollowQuery>,
) -> Response {
    let Some(session) = session_of(req) else {
        return Redirect::see_other("/ui/login").into_response();
    };
    let following = query.follow != Some(0);
    let rollout = match store.rollout(id).await {
        Ok(rollout) => rollout,
        Err(err) => return failure(err),
    };
    let writes = can_write(req, session);
    let verbs: Vec<Verb> = [
        Verb::Start,
        Verb::Pause,
        Verb::Resume,
        Verb::Abort,
        Verb::Rollback,
    ]
    .into_iter()
    .filter(|verb| verb.transition(rollout.state).is_ok())
    .collect();
    let attention: Vec<_> = rollout
        .steps
        .iter()
        .flat_map(|s| &s.clusters)
        .filter(|c| {
            matches!(
                c.state,
                ClusterState::Failed | ClusterState::Skipped | ClusterState::Pinned
            )
        })
        .collect();
    let waiting: Vec<_> = rollout
        .steps
        .iter()
        .flat_map(|s| s.clusters.iter().map(move |c| (s.step, c)))
        .filter(|(_, c)| c.state == ClusterState::WaitingWindow)
        .collect();
    let running = rollout.state == crate::domain::rollout::RolloutState::Running;
    let body = html! {
        @if running {
            p.muted {
                @if following {
                    "This page follows the rollout: it reloads every " (FOLLOW_SECONDS) " s. "
                    a href=(format!("/ui/rollouts/{}?follow=0", rollout.spec.id)) { "Stop following" }
                } @else {
                    a href=(format!("/ui/rollouts/{}", rollout.spec.id)) { "Follow the rollout (reload every " (FOLLOW_SECONDS) " s)" }
                }
            }
        }
        dl.facts {
            dt { "Component" } dd { (rollout.spec.component) }
            dt { "Target" } dd { code { (rollout.spec.target.oci_tag) } }
            dt { "State" } dd { strong { (rollout.state.as_str()) } @if let Some(step) = rollout.current_step { " — step " (step + 1) " of " (rollout.steps.len()) } }
            dt { "Gate" } dd { (format!("{:?}", rollout.spec.gate).to_lowercase()) ", bake " (rollout.spec.bake_seconds) " s, timeout " (rollout.spec.wave_timeout_seconds) " s" }
            dt { "Clusters" } dd {
                (rollout.counts.passed) " passed · " (rollout.counts.progressing) " progressing · "
                (rollout.counts.pending) " pending · " (rollout.counts.failed) " failed"
                @if rollout.counts.waiting_window > 0 { " · " (rollout.counts.waiting_window) " waiting for a window" }
            }
        }
        @if writes && !verbs.is_empty() {
            div.actions {
                @for verb in &verbs {
                    @if destructive(*verb) {
                        // Asks first, on a page that says what will happen.
                        a.button.secondary href=(format!("/ui/rollouts/{}/{}", rollout.spec.id, verb.as_str())) { (label(*verb)) "…" }
                    } @else {
                        form method="post" action=(format!("/ui/rollouts/{}/{}", rollout.spec.id, verb.as_str())) {
                            input type="hidden" name="csrf" value=(session.csrf);
                            button type="submit" { (label(*verb)) }
                        }
                    }
                }
            }
        }
        h2 { "Steps" }
        (step_rows(&rollout))
        @if !attention.is_empty() {
            h2 { "Clusters that need a look" }
            table {
                thead { tr { th { "Cluster" } th { "State" } th { "Reason" } } }
                tbody {
                    @for c in attention {
                        tr {
                            td { a href=(format!("/ui/clusters/{}", c.id)) { (c.id) } }
                            td {
                                @if c.state == ClusterState::Failed { (layout::state("failed")) }
                                @else { (c.state.as_str()) }
                            }
                            td { @if let Some(r) = &c.reason { (r) } @if let Some(m) = &c.message { br; span.muted { (m) } } }
                        }
                    }
                }
            }
        }
        @if !waiting.is_empty() {
            h2 { "Waiting for a maintenance window" }
            table {
                thead { tr { th { "Cluster" } th { "Step" } th { "Opens" } } }
                tbody {
                    @for (step, c) in &waiting {
                        tr {
                            td { a href=(format!("/ui/clusters/{}", c.id)) { (c.id) } }
                            td { (step) }
                            td { @match &c.window_opens_at {
                                Some(at) => time datetime=(at) { (at) },
                                None => span.muted { "not within a year" },
                            } }
                        }
                    }
                }
            }
        }
        @if !rollout.not_in_steps.is_empty() {
            h2 { "Not moved by this rollout" }
            table {
                thead { tr { th { "Cluster" } th { "Why" } } }
                tbody {
                    @for c in &rollout.not_in_steps {
                        tr {
                            td { a href=(format!("/ui/clusters/{}", c.id)) { (c.id) } }
                            td {
                                @match c.state {
                                    ClusterState::Pinned => "pinned: its own (or an overlay's) oci_tag for the component",
                                    ClusterState::Unselected => "no wave selects it",
                                    other => (other.as_str()),
                                }
                                @if let Some(r) = &c.reason { br; span.muted { (r) } }
                            }
                        }
                    }
                }
            }
        }
        @if !rollout.kept_previous.is_empty() {
            h2 { "Kept on their previous values at promotion" }
            ul { @for k in &rollout.kept_previous { li { (k.cluster) " — " code { (k.oci_tag) } } } }
        }
        h2 { "Transitions" }
        ol {
            @for t in &rollout.transitions {
                li { (t.at) " · " (t.actor) " · " (t.reason) }
            }
        }
    };
    let title = format!("Rollout {}", rollout.spec.id);
    // While it runs (a step waiting, baking), the page follows it on its own unless told not to.
    let refresh = (following && rollout.state == crate::domain::rollout::RolloutState::Running)
        .then_some(FOLLOW_SECONDS);
    html_response(
        StatusCode::OK,
        layout::refreshing_page(&title, Section::Rollouts, Some(session), body, refresh),
    )
}

/// Verbs that leave clusters where they are or take values back: asked for on a page first.
fn destructive(verb: Verb) -> bool {
    matches!(verb, Verb::Abort | Verb::Rollback)
}

/// What a destructive verb will do, in numbers, for the page that asks.
fn consequence(rollout: &Rollout, verb: Verb) -> String {
    let moved = rollout.counts.progressing + rollout.counts.passed + rollout.counts.failed;
    match verb {
        Verb::Rollback => format!(
            "{moved} cluster(s) the rollout moved to oci_tag '{}' get their previous values back \
             (those edited by hand since keep the edit); the catalog keeps its value; the rollout \
             ends rolled back.",
            rollout.spec.target.oci_tag
        ),
        _ => format!(
            "The rollout stops here and ends aborted: {moved} cluster(s) already moved keep oci_tag \
             '{}' as their own override; {} pending cluster(s) are never moved. Roll back instead to \
             give the moved clusters their previous values.",
            rollout.spec.target.oci_tag,
            rollout.counts.pending + rollout.counts.waiting_window
        ),
    }
}

/// The page that asks before an abort or a rollback.
#[handler]
pub async fn confirm_page(
    req: &Request,
    Data(store): Data<&Store>,
    Path((id, verb)): Path<(String, String)>,
) -> Response {
    let Some(session) = session_of(req) else {
        return Redirect::see_other("/ui/login").into_response();
    };
    let Some(verb) = parse_verb(&verb).filter(|v| destructive(*v)) else {
        return error_page(StatusCode::NOT_FOUND, "no such page");
    };
    if !can_write(req, session) {
        return error_page(
            StatusCode::FORBIDDEN,
            "this session reads only: sign in with the write token to change a rollout",
        );
    }
    let rollout = match store.rollout(id.clone()).await {
        Ok(rollout) => rollout,
        Err(err) => return failure(err),
    };
    let body = html! {
        p.notice.error role="alert" { (consequence(&rollout, verb)) }
        form method="post" action=(format!("/ui/rollouts/{id}/{}", verb.as_str())) {
            input type="hidden" name="csrf" value=(session.csrf);
            input type="hidden" name="confirmed" value="yes";
            p { button type="submit" { (label(verb)) " rollout " (id) } " " a href=(format!("/ui/rollouts/{id}")) { "Cancel" } }
        }
    };
    html_response(
        StatusCode::OK,
        page(
            &format!("{}?", label(verb)),
            Section::Rollouts,
            Some(session),
            body,
        ),
    )
}

fn parse_verb(text: &str) -> Option<Verb> {
    Some(match text {
        "start" => Verb::Start,
        "pause" => Verb::Pause,
        "resume" => Verb::Resume,
        "abort" => Verb::Abort,
        "rollback" => Verb::Rollback,
        _ => return None,
    })
}

#[derive(serde::Deserialize)]
struct VerbForm {
    /// `yes` once the confirmation page was seen (abort, rollback).
    #[serde(default)]
    confirmed: String,
}

fn label(verb: Verb) -> &'static str {
    match verb {
        Verb::Start => "Start",
        Verb::Pause => "Pause",
        Verb::Resume => "Resume",
        Verb::Abort => "Abort",
        Verb::Rollback => "Roll back",
    }
}

#[handler]
pub async fn act(
    req: &Request,
    Data(store): Data<&Store>,
    Path((id, verb)): Path<(String, String)>,
    body: Body,
) -> Response {
    let (form, session) = match write_form::<VerbForm>(req, body).await {
        Ok(posted) => posted,
        Err(response) => return *response,
    };
    let Some(verb) = parse_verb(&verb) else {
        return error_page(
            StatusCode::NOT_FOUND,
            &format!("no rollout action '{verb}'"),
        );
    };
    if destructive(verb) && form.confirmed != "yes" {
        return Redirect::see_other(format!("/ui/rollouts/{id}/{}", verb.as_str())).into_response();
    }
    match store.rollout_verb(id.clone(), verb, session.actor()).await {
        Ok(_) => Redirect::see_other(format!("/ui/rollouts/{id}")).into_response(),
        Err(err) => failure(err),
    }
}
