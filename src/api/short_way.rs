//! The short way through the application, for what the server answers most: Flux polls and
//! liveness probes. A good poll needs little — a token good for the feed, the cached feed,
//! the request's metrics and access line (and the protective headers, added outside) — and
//! `/health` less. This layer answers both at once, before the request data, the routers and
//! the extractors every other request passes. Anything else — no bearer token, a token not
//! good for this feed, a cluster not found, a store error, a `HEAD` — goes the full way,
//! which answers it exactly as before (401/403/404/503 with their bodies, counted by the
//! failed-auth throttle).

use std::sync::Arc;
use std::time::Instant;

use poem::http::{HeaderValue, Method, StatusCode};
use poem::web::headers::authorization::Bearer;
use poem::web::headers::{Authorization, HeaderMapExt};
use poem::{Body, Endpoint, Request, Response};

use super::error::AllowedMethods;
use super::observe::{self, RequestMetrics};
use crate::auth::{self, Identity, Tokens};
use crate::store::Store;
use crate::store::feeds::Feed;

/// What the short way needs, held once rather than looked up per request.
#[derive(Clone)]
pub struct ShortWay {
    store: Store,
    tokens: Tokens,
    requests: Arc<RequestMetrics>,
    /// The metrics route of each feed, in `FEEDS` order.
    routes: [Option<usize>; 3],
    health_route: Option<usize>,
}

const FEEDS: [(&str, Feed); 3] = [
    ("platform-components", Feed::PlatformComponents),
    ("namespaces", Feed::Namespaces),
    ("rolebindings", Feed::Rolebindings),
];

impl ShortWay {
    pub fn new(
        store: Store,
        tokens: Tokens,
        requests: Arc<RequestMetrics>,
        allowed: &AllowedMethods,
    ) -> Self {
        let routes =
            FEEDS.map(|(name, _)| allowed.route_index(&format!("/api/v2/flux/clusters/x/{name}")));
        ShortWay {
            store,
            tokens,
            requests,
            routes,
            health_route: allowed.route_index("/health"),
        }
    }

    /// The answer to a good poll or a liveness probe, or `None`: the request goes the full
    /// way.
    async fn answer(&self, req: &Request) -> Option<Response> {
        let started = Instant::now();
        if req.method() != Method::GET {
            return None;
        }
        if req.uri().path() == "/health" {
            let body = Body::from(r#"{"status":"ok"}"#);
            return Some(self.answered(req, started, self.health_route, body));
        }
        let (cluster_dns, which) = feed_of(req.uri().path())?;
        let token = req
            .headers()
            .typed_get::<Authorization<Bearer>>()?
            .token()
            .to_owned();
        match auth::identify_token(Some(&self.tokens), Some(&self.store), &token)
            .await
            .ok()??
        {
            Identity::Write | Identity::Fleet => {}
            Identity::Cluster {
                cluster_dns: own, ..
            } if *own == *cluster_dns => {}
            Identity::Cluster { .. } => return None,
        }
        let (_, feed) = FEEDS[which];
        let body = super::flux::feed(&self.store, req, cluster_dns, feed)
            .await
            .ok()?;
        Some(self.answered(req, started, self.routes[which], Body::from(body)))
    }

    /// A `200` with `body`, its request id, metrics and access line.
    fn answered(
        &self,
        req: &Request,
        started: Instant,
        route: Option<usize>,
        body: Body,
    ) -> Response {
        let id = observe::request_id(req, &self.requests);
        let mut response = Response::builder()
            .status(StatusCode::OK)
            .content_type("application/json; charset=utf-8")
            .body(body);
        if let Ok(value) = HeaderValue::from_str(&id) {
            response.headers_mut().insert("x-request-id", value);
        }
        let seconds = started.elapsed().as_secs_f64();
        self.requests.record(route, 200, seconds);
        let mode = req
            .data::<crate::config::AccessLog>()
            .copied()
            .unwrap_or_default();
        if mode == crate::config::AccessLog::All {
            observe::log_request(&id, req, 200, seconds);
        }
        response
    }
}

/// The cluster DNS name and the feed (index into `FEEDS`) of a feed's path; `None` for any
/// other path, and for one with percent-escapes (the router decodes those).
fn feed_of(path: &str) -> Option<(&str, usize)> {
    let (dns, name) = path
        .strip_prefix("/api/v2/flux/clusters/")?
        .split_once('/')?;
    if dns.is_empty() || dns.contains('%') {
        return None;
    }
    let which = FEEDS.iter().position(|(feed, _)| *feed == name)?;
    Some((dns, which))
}

/// The middleware: a good poll or a liveness probe answered here, every other request
/// passed on.
pub async fn short_way<E: Endpoint<Output = Response>>(
    ep: Arc<E>,
    short: ShortWay,
    req: Request,
) -> poem::Result<Response> {
    if let Some(response) = short.answer(&req).await {
        return Ok(response);
    }
    ep.call(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_three_feeds_of_a_named_cluster_take_the_short_way() {
        assert_eq!(
            feed_of("/api/v2/flux/clusters/a.example.com/platform-components"),
            Some(("a.example.com", 0))
        );
        assert_eq!(
            feed_of("/api/v2/flux/clusters/a.example.com/rolebindings"),
            Some(("a.example.com", 2))
        );
        for other in [
            "/api/v2/flux/clusters/a.example.com/events",
            "/api/v2/flux/clusters//namespaces",
            "/api/v2/flux/clusters/a%2Eexample.com/namespaces",
            "/api/v2/flux/clusters/a.example.com/namespaces/x",
            "/api/v2/flux/clusters",
            "/health",
        ] {
            assert_eq!(feed_of(other), None, "{other}");
        }
    }
}
