//! The web console over HTTP (README, "Web console"): sign-in into a server-side session, the cookie
//! and header rules, CSRF on every form, sessions of a revoked token ending, and the fleet
//! and cluster pages over the demo inventory.

use poem::http::StatusCode;
use serde_json::json;

use crate::helpers::{READ, TestApp, WRITE, answer};

/// Signs in with `token`; returns the answer (a redirect with the cookie, or the page).
pub async fn sign_in(app: &TestApp, token: &str) -> crate::helpers::Answer {
    answer(
        app.client
            .post("/ui/login")
            .content_type("application/x-www-form-urlencoded")
            .body(format!("token={token}"))
            .send()
            .await
            .0,
    )
    .await
}

/// The `name=value` part of the session cookie a sign-in set.
pub fn cookie_of(signed_in: &crate::helpers::Answer) -> String {
    let set = signed_in.header("Set-Cookie").expect("a session cookie");
    set.split(';').next().unwrap().to_owned()
}

pub async fn page(app: &TestApp, cookie: &str, path: &str) -> crate::helpers::Answer {
    answer(app.client.get(path).header("Cookie", cookie).send().await.0).await
}

pub fn text(answer: &crate::helpers::Answer) -> String {
    String::from_utf8_lossy(&answer.bytes).into_owned()
}

/// The CSRF token in a page's forms.
fn csrf_in(html: &str) -> String {
    let start = html.find(r#"name="csrf" value=""#).expect("a CSRF field") + 19;
    html[start..start + 64].to_owned()
}

#[tokio::test]
async fn signing_in_opens_a_server_side_session_with_a_strict_cookie() {
    let app = TestApp::new();
    // Without a session every page leads to the sign-in page.
    let anonymous = answer(app.client.get("/ui/").send().await.0).await;
    assert_eq!(anonymous.status, StatusCode::SEE_OTHER);
    assert_eq!(anonymous.header("Location"), Some("/ui/login"));
    let form = answer(app.client.get("/ui/login").send().await.0).await;
    assert_eq!(form.status, StatusCode::OK);
    assert!(text(&form).contains(r#"type="password" name="token""#));

    let refused = sign_in(&app, "not-a-token").await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    assert!(refused.header("Set-Cookie").is_none());

    let signed_in = sign_in(&app, READ).await;
    assert_eq!(
        signed_in.status,
        StatusCode::SEE_OTHER,
        "{}",
        text(&signed_in)
    );
    assert_eq!(signed_in.header("Location"), Some("/ui/"));
    let set = signed_in.header("Set-Cookie").unwrap();
    for flag in ["HttpOnly", "SameSite=Strict", "Path=/ui", "Max-Age=43200"] {
        assert!(set.contains(flag), "{flag} in {set}");
    }
    assert!(
        !set.contains("Secure"),
        "plain HTTP here; Secure is set under TLS"
    );
    let cookie = cookie_of(&signed_in);
    assert!(
        !cookie.contains(READ),
        "the cookie holds a random id, not the token"
    );

    let fleet = page(&app, &cookie, "/ui/").await;
    assert_eq!(fleet.status, StatusCode::OK);
    let html = text(&fleet);
    assert!(
        !html.contains(READ) && !html.contains(WRITE),
        "no token in a page"
    );
    for cluster in ["lab-dev-01", "edge-qa-01", "edge-prod-01", "edge-prod-02"] {
        assert!(
            html.contains(&format!("/ui/clusters/{cluster}")),
            "{cluster}"
        );
    }
    assert!(html.contains("signed in to read"));

    // Signing out needs the form's CSRF token, and ends the session.
    let forged = answer(
        app.client
            .post("/ui/logout")
            .header("Cookie", &cookie)
            .content_type("application/x-www-form-urlencoded")
            .body("csrf=0000")
            .send()
            .await
            .0,
    )
    .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    assert!(text(&forged).contains("CSRF"));
    assert_eq!(
        page(&app, &cookie, "/ui/").await.status,
        StatusCode::OK,
        "still signed in"
    );
    let out = answer(
        app.client
            .post("/ui/logout")
            .header("Cookie", &cookie)
            .content_type("application/x-www-form-urlencoded")
            .body(format!("csrf={}", csrf_in(&html)))
            .send()
            .await
            .0,
    )
    .await;
    assert_eq!(out.status, StatusCode::SEE_OTHER);
    assert!(out.header("Set-Cookie").unwrap().contains("Max-Age=0"));
    assert_eq!(
        page(&app, &cookie, "/ui/").await.status,
        StatusCode::SEE_OTHER
    );
}

#[tokio::test]
async fn every_page_carries_the_security_headers() {
    let app = TestApp::new();
    let cookie = cookie_of(&sign_in(&app, WRITE).await);
    for path in [
        "/ui/login",
        "/ui/",
        "/ui/clusters/lab-dev-01",
        "/ui/clusters/nope",
        "/ui/static/console.css",
    ] {
        let answer = page(&app, &cookie, path).await;
        let csp = answer.header("Content-Security-Policy").unwrap_or_default();
        assert!(
            csp.contains("default-src 'none'")
                && csp.contains("script-src 'self';")
                && !csp.contains("unsafe-inline")
                && !csp.contains("unsafe-eval")
                && csp.contains("frame-ancestors 'none'"),
            "{path}: {csp}"
        );
        assert_eq!(answer.header("X-Frame-Options"), Some("DENY"), "{path}");
        assert_eq!(
            answer.header("Referrer-Policy"),
            Some("no-referrer"),
            "{path}"
        );
    }
    let missing = page(&app, &cookie, "/ui/clusters/nope").await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert!(text(&missing).contains("no cluster with id"));
    let html = text(&page(&app, &cookie, "/ui/").await);
    assert!(
        !html.contains("<script"),
        "no script where nothing is followed"
    );
    assert!(html.contains("signed in to write"));
}

#[tokio::test]
async fn a_clusters_own_token_cannot_sign_in_and_a_revoked_token_ends_its_sessions() {
    let app = TestApp::new();
    let scoped = app
        .post("/tokens", &json!({"name": "lab", "cluster": "lab-dev-01"}))
        .await;
    assert_eq!(scoped.status, StatusCode::CREATED, "{}", scoped.json);
    let refused = sign_in(&app, scoped.json["token"].as_str().unwrap()).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert!(text(&refused).contains("cannot sign in"));

    let fleet_token = app.post("/tokens", &json!({"name": "ops"})).await;
    assert_eq!(
        fleet_token.status,
        StatusCode::CREATED,
        "{}",
        fleet_token.json
    );
    let cookie = cookie_of(&sign_in(&app, fleet_token.json["token"].as_str().unwrap()).await);
    assert_eq!(page(&app, &cookie, "/ui/").await.status, StatusCode::OK);
    let revoked = app.delete("/tokens/ops").await;
    assert_eq!(revoked.status, StatusCode::OK, "{}", revoked.json);
    let after = page(&app, &cookie, "/ui/").await;
    assert_eq!(
        after.status,
        StatusCode::SEE_OTHER,
        "the session ended with its token"
    );
    assert_eq!(after.header("Location"), Some("/ui/login"));
}

#[tokio::test]
async fn the_fleet_page_searches_filters_and_pages() {
    let app = TestApp::new();
    for i in 0..60 {
        let body = json!({"id": format!("store-{i:03}"), "cluster_name": format!("Store {i}"),
            "cluster_dns": format!("store-{i:03}.shops.example.com"), "environment": "prod",
            "labels": {"region": if i % 2 == 0 { "eu" } else { "us" }},
            "platform_components": [{"id": "cert-manager", "enabled": true, "oci_tag": null, "component_path": null}]});
        assert_eq!(
            app.post("/clusters", &body).await.status,
            StatusCode::CREATED
        );
    }
    let cookie = cookie_of(&sign_in(&app, READ).await);
    let first = text(&page(&app, &cookie, "/ui/").await);
    assert!(first.contains("Clusters 1–50 of 64"), "{first}");
    assert!(first.contains("Next →"));
    let second = text(&page(&app, &cookie, "/ui/?offset=50").await);
    assert!(second.contains("Clusters 51–64 of 64"));
    assert!(second.contains("← Previous") && !second.contains("Next →"));
    let eu = text(&page(&app, &cookie, "/ui/?q=region%3Deu").await);
    assert!(eu.contains("of 30") && eu.contains("store-000") && !eu.contains("store-001"));
    // A search counts and pages what it found.
    let stores = text(&page(&app, &cookie, "/ui/?q=store").await);
    assert!(stores.contains("Clusters 1–50 of 60"), "{stores}");
    let rest = text(&page(&app, &cookie, "/ui/?q=store&offset=50").await);
    assert!(rest.contains("Clusters 51–60 of 60"), "{rest}");
    assert!(
        rest.contains("store-059") && !rest.contains("store-049"),
        "{rest}"
    );
    let dev = text(&page(&app, &cookie, "/ui/?environment=dev").await);
    assert!(dev.contains("lab-dev-01") && dev.contains("of 1"));
    let none = text(&page(&app, &cookie, "/ui/?q=nothing-like-this").await);
    assert!(none.contains("No cluster matches."));

    // A failing cluster is one filter away, with its state on the page (it polls, so it is
    // not stale).
    let polled = app
        .get("/api/v2/flux/clusters/store-007.shops.example.com/platform-components")
        .await;
    assert_eq!(polled.status, StatusCode::OK);
    let event = json!({
        "involvedObject": {"kind": "HelmRelease", "namespace": "flux-system", "name": "cert-manager"},
        "severity": "error", "timestamp": "2026-11-27T10:00:00Z", "reason": "UpgradeFailed",
        "message": "timed out waiting for the condition",
        "metadata": {"component": "cert-manager", "revision": "v1.16.2"}
    });
    let sent = app
        .call(
            poem::http::Method::POST,
            "/api/v2/flux/clusters/store-007.shops.example.com/events",
            Some(READ),
            Some(&event),
        )
        .await;
    assert_eq!(sent.status, StatusCode::ACCEPTED);
    let failing = text(&page(&app, &cookie, "/ui/?show=failing").await);
    assert!(
        failing.contains("store-007") && failing.contains("of 1"),
        "{failing}"
    );
    assert!(failing.contains("state-failed"));
    // At a glance above every list: how many clusters, failing, stale; each a filter.
    assert!(
        failing.contains("64 clusters") && failing.contains("1 with a reported failure"),
        "{failing}"
    );
    assert!(
        failing.contains("63 stale"),
        "store-007 polled; nobody else did: {failing}"
    );
    // Failing first, then stale, then the rest: store-007 heads the unfiltered list.
    let all = text(&page(&app, &cookie, "/ui/").await);
    let first_row = &all[all.find("<tbody>").unwrap()..];
    assert!(
        first_row[..first_row.find("</tr>").unwrap()].contains("store-007"),
        "{all}"
    );
    // By component and version (desired or reported).
    let on = text(&page(&app, &cookie, "/ui/?component=cert-manager&version=v1.16.2").await);
    assert!(
        on.contains("store-007") && on.contains("Clusters 1–"),
        "{on}"
    );
    let with = text(&page(&app, &cookie, "/ui/?component=cert-manager").await);
    assert!(
        with.contains("store-007") && with.contains("Clusters 1–"),
        "{with}"
    );
    let off = text(&page(&app, &cookie, "/ui/?component=cert-manager&version=9.9.9").await);
    assert!(off.contains("No cluster matches."));
    let stale = text(&page(&app, &cookie, "/ui/?show=stale").await);
    assert!(
        stale.contains("of 63") && !stale.contains("/ui/clusters/store-007\""),
        "{stale}"
    );
    let cluster = text(&page(&app, &cookie, "/ui/clusters/store-007").await);
    assert!(
        cluster.contains("UpgradeFailed")
            && cluster.contains("timed out waiting for the condition")
    );
    // The failing component comes first, under a count per state; the event's time is a
    // relative one with the exact instant in a <time> element.
    let table = &cluster[cluster.find("<tbody>").unwrap()..];
    let first_state = table.find("state-").unwrap();
    assert!(table[first_state..].starts_with("state-failed"), "{table}");
    assert!(cluster.contains("<time datetime=") && cluster.contains(" ago</time>"));

    // The component's page: which version runs where; the failure is a link to the cluster.
    let component = text(&page(&app, &cookie, "/ui/components/cert-manager").await);
    let failed_link =
        "/ui/components/cert-manager?environment=prod&amp;version=v1.16.2&amp;state=failed";
    assert!(
        component.contains("Which version runs where") && component.contains(failed_link),
        "{component}"
    );
    let behind = text(&page(&app, &cookie, &failed_link.replace("&amp;", "&")).await);
    assert!(
        behind.contains("1 cluster(s)") && behind.contains("/ui/clusters/store-007"),
        "{behind}"
    );
    assert_eq!(
        page(&app, &cookie, "/ui/components/nope").await.status,
        StatusCode::NOT_FOUND
    );
    let catalog = text(&page(&app, &cookie, "/ui/catalog").await);
    assert!(catalog.contains(r#"href="/ui/components/cert-manager""#));
    assert!(
        cluster.contains("platform-components") && cluster.contains("&quot;oci_url&quot;")
            || cluster.contains("\"oci_url\"")
    );
}

#[tokio::test]
async fn the_cluster_page_shows_its_feeds_patches_and_components() {
    let app = TestApp::new();
    let cookie = cookie_of(&sign_in(&app, READ).await);
    let html = text(&page(&app, &cookie, "/ui/clusters/edge-qa-01").await);
    assert!(html.contains("edge-qa-01.k8s.example.com"));
    for component in [
        "cert-manager",
        "traefik",
        "kube-prometheus-stack",
        "loki",
        "podinfo",
    ] {
        assert!(html.contains(component), "{component}");
    }
    assert!(
        html.contains("(disabled)"),
        "loki is disabled on edge-qa-01"
    );
    for feed in ["platform-components", "namespaces", "rolebindings"] {
        assert!(
            html.contains(&format!("<summary>{feed}</summary>")),
            "{feed}"
        );
    }
    assert!(html.contains("Helm value patches"));
}

async fn post_form(
    app: &TestApp,
    cookie: &str,
    path: &str,
    fields: &[(&str, &str)],
) -> crate::helpers::Answer {
    answer(
        app.client
            .post(path)
            .header("Cookie", cookie)
            .content_type("application/x-www-form-urlencoded")
            .body(serde_urlencoded::to_string(fields).unwrap())
            .send()
            .await
            .0,
    )
    .await
}

/// The text of the textarea `name` in a page.
fn textarea(html: &str, name: &str) -> String {
    let start = html
        .find(&format!(r#"<textarea name="{name}""#))
        .unwrap_or_else(|| panic!("textarea {name}"));
    let open = start + html[start..].find('>').unwrap() + 1;
    let end = open + html[open..].find("</textarea>").unwrap();
    html[open..end]
        .replace("&quot;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// The value of a hidden or textarea field `name` in a page.
fn field(html: &str, name: &str) -> String {
    let marker = format!(r#"name="{name}" value=""#);
    let start = html.find(&marker).unwrap_or_else(|| panic!("field {name}")) + marker.len();
    let end = start + html[start..].find('"').unwrap();
    html[start..end]
        .replace("&quot;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

#[tokio::test]
async fn an_edit_is_previewed_saved_audited_and_reverted() {
    let app = TestApp::new();
    let cookie = cookie_of(&sign_in(&app, WRITE).await);
    let page_html = text(&page(&app, &cookie, "/ui/clusters/lab-dev-01").await);
    assert!(page_html.contains("Preview the change"));
    let csrf = csrf_in(&page_html);
    let document = r#"{"platform_components": [
        {"id": "cert-manager", "enabled": true, "oci_tag": "v1.17.0", "component_path": null},
        {"id": "external-secrets", "enabled": true, "oci_tag": null, "component_path": null},
        {"id": "traefik", "enabled": true, "oci_tag": "34.0.0-rc.1", "component_path": null},
        {"id": "podinfo", "enabled": true, "oci_tag": null, "component_path": null}]}"#;
    let before = app.all_feeds().await;
    // Without the form's CSRF token: refused, nothing previewed.
    let forged = post_form(
        &app,
        &cookie,
        "/ui/clusters/lab-dev-01/preview",
        &[("csrf", "x"), ("document", document)],
    )
    .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    let preview = post_form(
        &app,
        &cookie,
        "/ui/clusters/lab-dev-01/preview",
        &[("csrf", &csrf), ("document", document)],
    )
    .await;
    assert_eq!(preview.status, StatusCode::OK, "{}", text(&preview));
    let preview_html = text(&preview);
    assert!(preview_html.contains("Nothing is saved yet") && preview_html.contains("1 cluster(s)"));
    assert!(
        preview_html.contains("<td>cert-manager</td>"),
        "the changed input is listed"
    );
    assert!(
        preview_html.contains("platform_components[cert-manager].oci_tag")
            && preview_html.contains("&quot;v1.17.0&quot;"),
        "the edited field, before and after: {preview_html}"
    );
    assert!(app.all_feeds().await == before, "a preview stores nothing");

    // A typo (a trailing comma) or a refused value comes back in the form, as typed, with
    // what is wrong above it.
    let typo = r#"{"node_count": 4,}"#;
    let again = post_form(
        &app,
        &cookie,
        "/ui/clusters/lab-dev-01/preview",
        &[("csrf", &csrf), ("document", typo)],
    )
    .await;
    assert_eq!(again.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        textarea(&text(&again), "document"),
        typo,
        "the text is kept"
    );
    assert!(text(&again).contains("not JSON") && text(&again).contains("Preview the change"));
    let refused = r#"{"platform_components": [{"id": "no-such", "enabled": true}]}"#;
    let again = post_form(
        &app,
        &cookie,
        "/ui/clusters/lab-dev-01/preview",
        &[("csrf", &csrf), ("document", refused)],
    )
    .await;
    assert_eq!(again.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(textarea(&text(&again), "document"), refused);
    assert!(text(&again).contains("no-such"));

    let saved = post_form(
        &app,
        &cookie,
        "/ui/clusters/lab-dev-01/save",
        &[
            ("csrf", &csrf),
            ("document", &field(&preview_html, "document")),
            ("revision", &field(&preview_html, "revision")),
        ],
    )
    .await;
    assert_eq!(saved.status, StatusCode::SEE_OTHER, "{}", text(&saved));
    let location = saved.header("Location").unwrap().to_owned();
    assert!(location.starts_with("/ui/clusters/lab-dev-01?saved="));
    let revision: i64 = location.rsplit('=').next().unwrap().parse().unwrap();
    assert!(
        text(&page(&app, &cookie, &location).await)
            .contains(&format!("Saved as audit revision {revision}"))
    );
    let cluster = app.get("/clusters/lab-dev-01").await.json;
    assert_eq!(cluster["platform_components"][0]["oci_tag"], "v1.17.0");

    // The audit page shows who did it and what changed; revert asks first, then undoes it.
    let audit_html = text(&page(&app, &cookie, "/ui/audit").await);
    assert!(audit_html.contains(&format!("revision-{revision}")) && audit_html.contains("console"));
    assert!(
        audit_html.contains("platform_components[cert-manager].oci_tag")
            && audit_html.contains("&quot;v1.17.0&quot;"),
        "the changed field, down to the component: {audit_html}"
    );
    // Narrowed to one record, or to one actor.
    let narrowed = text(&page(&app, &cookie, "/ui/audit?kind=clusters&id=lab-dev-01").await);
    assert!(narrowed.contains(&format!("revision-{revision}")));
    let other = text(&page(&app, &cookie, "/ui/audit?kind=clusters&id=edge-qa-01").await);
    assert!(!other.contains(&format!("revision-{revision}")) && other.contains("No audit entry"));
    let by_actor = text(&page(&app, &cookie, "/ui/audit?actor=write-token").await);
    assert!(!by_actor.contains(&format!("revision-{revision}")));
    let ask = text(&page(&app, &cookie, &format!("/ui/audit/{revision}/revert")).await);
    assert!(ask.contains(&format!("Revert revision {revision}")));
    assert!(
        ask.contains("alters the feeds of 1 cluster(s)") && ask.contains("<td>cert-manager</td>"),
        "the revert's own preview: {ask}"
    );
    let reverted = post_form(
        &app,
        &cookie,
        &format!("/ui/audit/{revision}/revert"),
        &[("csrf", &csrf)],
    )
    .await;
    assert_eq!(
        reverted.status,
        StatusCode::SEE_OTHER,
        "{}",
        text(&reverted)
    );
    assert!(
        app.all_feeds().await == before,
        "back to every feed as before"
    );
}

#[tokio::test]
async fn a_read_session_sees_no_forms_and_cannot_write() {
    let app = TestApp::new();
    let cookie = cookie_of(&sign_in(&app, READ).await);
    let html = text(&page(&app, &cookie, "/ui/clusters/lab-dev-01").await);
    assert!(!html.contains("Preview the change") && !html.contains("/ui/tokens"));
    let csrf = csrf_in(&html);
    let refused = post_form(
        &app,
        &cookie,
        "/ui/clusters/lab-dev-01/preview",
        &[("csrf", &csrf), ("document", "{}")],
    )
    .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert!(text(&refused).contains("reads only"));
    assert_eq!(
        page(&app, &cookie, "/ui/tokens").await.status,
        StatusCode::FORBIDDEN
    );
    // One rule for the audit trail in the console and the API: the write token.
    assert!(!html.contains(r#"href="/ui/audit""#));
    assert_eq!(
        page(&app, &cookie, "/ui/audit").await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        page(&app, &cookie, "/ui/audit/1/revert").await.status,
        StatusCode::FORBIDDEN
    );
    app.call(poem::http::Method::GET, "/audit", Some(READ), None)
        .await
        .expect_error(StatusCode::UNAUTHORIZED, "unauthorized");

    // A read-only server: even the write token's session cannot write.
    let read_only = TestApp::with(
        flux_inputs::config::ApiMode::ReadOnly,
        flux_inputs::config::SeedSource::Demo,
    );
    let cookie = cookie_of(&sign_in(&read_only, WRITE).await);
    let html = text(&page(&read_only, &cookie, "/ui/clusters/lab-dev-01").await);
    assert!(!html.contains("Preview the change"));
    let refused = post_form(
        &read_only,
        &cookie,
        "/ui/clusters/lab-dev-01/save",
        &[("csrf", &csrf_in(&html)), ("document", "{}")],
    )
    .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert!(text(&refused).contains("read-only"));
}

#[tokio::test]
async fn tokens_are_created_once_shown_and_revoked() {
    let app = TestApp::new();
    let cookie = cookie_of(&sign_in(&app, WRITE).await);
    let html = text(&page(&app, &cookie, "/ui/tokens").await);
    let csrf = csrf_in(&html);
    let created = post_form(
        &app,
        &cookie,
        "/ui/tokens",
        &[("csrf", &csrf), ("name", "edge-site-7"), ("cluster", "")],
    )
    .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", text(&created));
    let created_html = text(&created);
    let start = created_html.find("<pre>").unwrap() + 5;
    let token = &created_html[start..start + created_html[start..].find("</pre>").unwrap()];
    assert_eq!(
        app.call(
            poem::http::Method::GET,
            "/api/v2/flux/clusters",
            Some(token),
            None
        )
        .await
        .status,
        StatusCode::OK
    );
    let listed = text(&page(&app, &cookie, "/ui/tokens").await);
    assert!(
        listed.contains("edge-site-7") && !listed.contains(token),
        "listed, never shown again"
    );
    let revoked = post_form(
        &app,
        &cookie,
        "/ui/tokens/edge-site-7/revoke",
        &[("csrf", &csrf)],
    )
    .await;
    assert_eq!(revoked.status, StatusCode::SEE_OTHER);
    assert_eq!(
        app.call(
            poem::http::Method::GET,
            "/api/v2/flux/clusters",
            Some(token),
            None
        )
        .await
        .status,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn a_rollout_is_planned_created_and_controlled_from_the_console() {
    let app = TestApp::new();
    let cookie = cookie_of(&sign_in(&app, WRITE).await);
    let html = text(&page(&app, &cookie, "/ui/rollouts").await);
    let csrf = csrf_in(&html);
    assert!(
        html.contains("cert-manager-v1-17"),
        "the form starts with the example"
    );
    let spec = r#"{"id": "cm", "component": "cert-manager", "target": {"oci_tag": "v1.17.0"},
                   "waves": [{"environment": "dev"}, {"environment": "qa"}], "bake_seconds": 5}"#;
    let plan = post_form(
        &app,
        &cookie,
        "/ui/rollouts/plan",
        &[("csrf", &csrf), ("spec", spec)],
    )
    .await;
    assert_eq!(plan.status, StatusCode::OK, "{}", text(&plan));
    let plan_html = text(&plan);
    assert!(plan_html.contains("Nothing is stored yet") && plan_html.contains("lab-dev-01"));
    assert!(
        app.get("/rollouts").await.json == json!([]),
        "planning stores nothing"
    );
    let created = post_form(
        &app,
        &cookie,
        "/ui/rollouts/create",
        &[("csrf", &csrf), ("spec", &field(&plan_html, "spec"))],
    )
    .await;
    assert_eq!(created.status, StatusCode::SEE_OTHER, "{}", text(&created));
    assert_eq!(created.header("Location"), Some("/ui/rollouts/cm"));
    for (verb, state) in [
        ("start", "running"),
        ("pause", "paused"),
        ("resume", "running"),
    ] {
        let acted = post_form(
            &app,
            &cookie,
            &format!("/ui/rollouts/cm/{verb}"),
            &[("csrf", &csrf)],
        )
        .await;
        assert_eq!(
            acted.status,
            StatusCode::SEE_OTHER,
            "{verb}: {}",
            text(&acted)
        );
        assert_eq!(app.get("/rollouts/cm").await.json["state"], state, "{verb}");
    }
    let shown = text(&page(&app, &cookie, "/ui/rollouts/cm").await);
    assert!(
        shown.contains("<strong>running</strong>")
            && shown.contains("Pause")
            && shown.contains("Roll back")
    );
    assert!(
        shown.contains("resume by console"),
        "the transitions with who moved it"
    );
    // One numbering (from 1, as the list), waves by their selectors, the clusters left out
    // and why, and a page that follows the running rollout by itself.
    assert!(shown.contains("step 1 of 2"), "{shown}");
    assert!(
        shown.contains("<td>dev</td>") && shown.contains("<td>qa</td>"),
        "{shown}"
    );
    assert!(shown.contains("Not moved by this rollout") && shown.contains("no wave selects it"));
    assert!(
        shown.contains(r#"data-follow="10""#) && shown.contains(r#"src="/ui/static/follow.js""#)
    );
    let still = text(&page(&app, &cookie, "/ui/rollouts/cm?follow=0").await);
    assert!(!still.contains("data-follow") && still.contains("Follow the rollout"));
    let listed = text(&page(&app, &cookie, "/ui/rollouts").await);
    assert!(listed.contains("1 of 2"), "{listed}");
    let wrong = post_form(&app, &cookie, "/ui/rollouts/cm/start", &[("csrf", &csrf)]).await;
    assert_eq!(wrong.status, StatusCode::CONFLICT);
    let listed = text(&page(&app, &cookie, "/ui/rollouts").await);
    assert!(listed.contains("/ui/rollouts/cm"));

    // Roll back and abort ask first, saying what will happen; a post that skipped the
    // question is sent to it and changes nothing.
    let hasty = post_form(
        &app,
        &cookie,
        "/ui/rollouts/cm/rollback",
        &[("csrf", &csrf)],
    )
    .await;
    assert_eq!(hasty.status, StatusCode::SEE_OTHER);
    assert_eq!(hasty.header("Location"), Some("/ui/rollouts/cm/rollback"));
    assert_eq!(app.get("/rollouts/cm").await.json["state"], "running");
    let ask = text(&page(&app, &cookie, "/ui/rollouts/cm/rollback").await);
    assert!(
        ask.contains("get their previous values back") && ask.contains("v1.17.0"),
        "{ask}"
    );
    let rolled = post_form(
        &app,
        &cookie,
        "/ui/rollouts/cm/rollback",
        &[("csrf", &csrf), ("confirmed", "yes")],
    )
    .await;
    assert_eq!(rolled.status, StatusCode::SEE_OTHER, "{}", text(&rolled));
    assert_eq!(app.get("/rollouts/cm").await.json["state"], "rolled_back");
}

/// The catalog is one line per component: its values and what the fleet reports, each
/// number that needs a look a link to the component's page.
#[tokio::test]
async fn the_catalog_lists_each_component_on_one_line() {
    let app = TestApp::new();
    let cookie = cookie_of(&sign_in(&app, READ).await);
    let html = text(&page(&app, &cookie, "/ui/catalog").await);
    let components = app.get("/platform_components").await.json;
    let rows = html.matches("<tr>").count() - 1;
    assert_eq!(rows, components.as_array().unwrap().len(), "{html}");
    let row = |id: &str| {
        let at = html
            .find(&format!(r#"href="/ui/components/{id}""#))
            .unwrap();
        html[at..at + html[at..].find("</tr>").unwrap()].to_owned()
    };
    // Nothing reported yet: every cluster it is enabled on counts as not reported.
    let traefik = row("traefik");
    assert!(traefik.contains("<code>"), "{traefik}");
    let status = app.get("/status/components/traefik").await.json;
    let clusters =
        status["clusters"].as_u64().unwrap() - status["counts"]["disabled"].as_u64().unwrap();
    assert!(clusters > 0, "{status}");
    assert!(
        traefik.contains(&format!(r#"<td class="number">{clusters}</td>"#)),
        "{clusters} in {traefik}"
    );
    assert!(
        traefik.contains(r#"<td class="number wide">0</td>"#),
        "{traefik}"
    );
}

/// A sign-in posted from another site is refused (Origin, Sec-Fetch-Site), one from the
/// console is not. Under `Referrer-Policy: no-referrer` a browser sends `Origin: null`, so
/// `Sec-Fetch-Site` decides then.
#[tokio::test]
async fn a_cross_site_sign_in_is_refused() {
    let app = TestApp::new();
    let post = |origin: &'static str, site: &'static str| {
        app.client
            .post("/ui/login")
            .header("Host", "inventory.example.com")
            .header("Origin", origin)
            .header("Sec-Fetch-Site", site)
            .content_type("application/x-www-form-urlencoded")
            .body(format!("token={READ}"))
            .send()
    };
    for (origin, site) in [
        ("https://evil.example.net", "cross-site"),
        ("null", "cross-site"),
        ("https://evil.example.net", "same-origin"),
    ] {
        let foreign = answer(post(origin, site).await.0).await;
        assert_eq!(foreign.status, StatusCode::FORBIDDEN, "{origin} {site}");
        assert!(foreign.header("Set-Cookie").is_none());
    }
    for (origin, site) in [
        ("http://inventory.example.com", "same-origin"),
        ("null", "same-origin"),
    ] {
        let own = answer(post(origin, site).await.0).await;
        assert_eq!(own.status, StatusCode::SEE_OTHER, "{origin} {site}");
    }
}

/// A sign-in body trickled slower than the body timeout is cut off (408).
#[test]
fn a_trickled_sign_in_body_is_cut_off() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let server = crate::process::Server::ready(
        &dir.path().join("inventory.db"),
        &[("AUTH_TOKEN", READ), ("BODY_TIMEOUT_SECONDS", "1")],
    );
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    stream
        .write_all(
            b"POST /ui/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n\
              Content-Length: 1000\r\n\r\ntoken=",
        )
        .unwrap();
    let (answer, closed) =
        crate::connections::read_until_closed(&mut stream, std::time::Duration::from_secs(15));
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.starts_with("HTTP/1.1 408"),
        "{answer} (closed: {closed})"
    );
}

#[tokio::test]
async fn the_console_says_which_clusters_a_window_closes_and_when_they_open() {
    let app = TestApp::new();
    // Wednesday 2 December 2026, 10:00 in Berlin (09:00Z).
    let wednesday = 1_796_202_000;
    app.store.clock().set(wednesday);
    let hours = json!({"id": "store-hours", "kind": "deny", "selector": {"environment": "prod"},
        "recurrence": {"days": ["mon", "tue", "wed", "thu", "fri", "sat"], "start": "08:00",
                       "duration_minutes": 720, "time_zone": "Europe/Berlin"}});
    assert_eq!(
        app.post("/windows", &hours).await.status,
        StatusCode::CREATED
    );
    let cookie = cookie_of(&sign_in(&app, READ).await);

    let closed = text(&page(&app, &cookie, "/ui/?show=closed").await);
    assert!(
        closed.contains("edge-prod-01")
            && closed.contains("edge-prod-02")
            && closed.contains("of 2"),
        "{closed}"
    );
    assert!(!closed.contains("edge-qa-01"), "{closed}");
    assert!(closed.contains("closed by store-hours"), "{closed}");

    let cluster = text(&page(&app, &cookie, "/ui/clusters/edge-prod-01").await);
    assert!(cluster.contains("not allowed now"), "{cluster}");
    // It opens at 20:00 in Berlin, in 10 hours.
    assert!(
        cluster.contains(r#"datetime="2026-12-02T19:00:00Z""#) && cluster.contains("in 10 h"),
        "{cluster}"
    );
    let qa = text(&page(&app, &cookie, "/ui/clusters/edge-qa-01").await);
    assert!(!qa.contains("not allowed now"));
}
