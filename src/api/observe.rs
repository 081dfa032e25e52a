//! One access line per request (with a request id, never a header value), and the request
//! metrics Prometheus scrapes from `/metrics`.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use poem::http::HeaderValue;
use poem::{Endpoint, IntoResponse, Request, Response};

use super::error::AllowedMethods;
use crate::config::AccessLog;

/// Latency histogram buckets, in seconds.
const BUCKETS: [f64; 11] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
];

/// Statuses counted one by one; any other is counted under its class (`4xx`).
const STATUSES: [u16; 22] = [
    200, 201, 202, 204, 304, 400, 401, 403, 404, 405, 408, 409, 412, 413, 414, 415, 422, 429, 431,
    500, 503, 507,
];
const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// One route's counters: lock-free, so recording a Flux poll contends on nothing.
struct RouteStats {
    route: Arc<str>,
    statuses: [AtomicU64; STATUSES.len() + CLASSES.len()],
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl RouteStats {
    fn new(route: Arc<str>) -> Self {
        RouteStats {
            route,
            statuses: std::array::from_fn(|_| AtomicU64::new(0)),
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            count: AtomicU64::new(0),
            sum_micros: AtomicU64::new(0),
        }
    }
}

/// Request counters and latency histograms by route (the spec's path template, in the
/// order of `AllowedMethods`, then `other`).
#[derive(Default)]
pub struct RequestMetrics {
    routes: OnceLock<Box<[RouteStats]>>,
    next_id: AtomicU64,
}

impl RequestMetrics {
    /// Sets the routes from the spec's table; later calls keep the first.
    pub fn init(&self, allowed: &AllowedMethods) {
        self.routes.get_or_init(|| {
            allowed
                .templates()
                .chain(std::iter::once(Arc::from("other")))
                .map(RouteStats::new)
                .collect()
        });
    }

    pub(super) fn record(&self, route: Option<usize>, status: u16, seconds: f64) {
        let Some(routes) = self.routes.get() else {
            return;
        };
        let Some(stats) = route.and_then(|i| routes.get(i)).or_else(|| routes.last()) else {
            return;
        };
        let slot = STATUSES
            .iter()
            .position(|s| *s == status)
            .unwrap_or_else(|| STATUSES.len() + usize::from(status / 100).clamp(1, 5) - 1);
        stats.statuses[slot].fetch_add(1, Ordering::Relaxed);
        for (bucket, bound) in stats.buckets.iter().zip(BUCKETS) {
            if seconds <= bound {
                bucket.fetch_add(1, Ordering::Relaxed);
            }
        }
        stats.count.fetch_add(1, Ordering::Relaxed);
        stats
            .sum_micros
            .fetch_add((seconds * 1e6) as u64, Ordering::Relaxed);
    }

    /// Prometheus text exposition of the request metrics.
    pub fn render(&self, out: &mut String) {
        let mut routes: Vec<&RouteStats> = self
            .routes
            .get()
            .map(|r| r.iter().collect())
            .unwrap_or_default();
        routes.sort_by(|a, b| a.route.cmp(&b.route));
        out.push_str("# HELP flux_inputs_requests_total HTTP requests by route and status.\n");
        out.push_str("# TYPE flux_inputs_requests_total counter\n");
        for stats in &routes {
            let labels = STATUSES
                .iter()
                .map(u16::to_string)
                .chain(CLASSES.iter().map(|c| (*c).to_owned()));
            for (status, count) in labels.zip(&stats.statuses) {
                let count = count.load(Ordering::Relaxed);
                if count > 0 {
                    let _ = writeln!(
                        out,
                        "flux_inputs_requests_total{{route=\"{}\",status=\"{status}\"}} {count}",
                        stats.route
                    );
                }
            }
        }
        out.push_str("# HELP flux_inputs_request_duration_seconds Time to answer, by route.\n");
        out.push_str("# TYPE flux_inputs_request_duration_seconds histogram\n");
        for stats in routes {
            let count = stats.count.load(Ordering::Relaxed);
            if count == 0 {
                continue;
            }
            let route = &stats.route;
            for (bound, bucket) in BUCKETS.iter().zip(&stats.buckets) {
                let _ = writeln!(
                    out,
                    "flux_inputs_request_duration_seconds_bucket{{route=\"{route}\",le=\"{bound}\"}} {}",
                    bucket.load(Ordering::Relaxed)
                );
            }
            let _ = writeln!(
                out,
                "flux_inputs_request_duration_seconds_bucket{{route=\"{route}\",le=\"+Inf\"}} {count}"
            );
            let _ = writeln!(
                out,
                "flux_inputs_request_duration_seconds_sum{{route=\"{route}\"}} {}",
                stats.sum_micros.load(Ordering::Relaxed) as f64 / 1e6
            );
            let _ = writeln!(
                out,
                "flux_inputs_request_duration_seconds_count{{route=\"{route}\"}} {count}"
            );
        }
    }
}

/// A request id: the client's `X-Request-Id` when it is short and printable, else a new one.
pub(super) fn request_id(req: &Request, metrics: &RequestMetrics) -> String {
    req.headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            !v.is_empty()
                && v.len() <= 64
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        })
        .map(str::to_owned)
        .unwrap_or_else(|| {
            format!(
                "{:x}-{:x}",
                std::process::id(),
                metrics.next_id.fetch_add(1, Ordering::Relaxed)
            )
        })
}

/// Logs one line per request (as `AccessLog` says) and records its metrics.
pub async fn access_log<E: Endpoint>(ep: Arc<E>, req: Request) -> poem::Result<Response> {
    let started = Instant::now();
    let metrics = req
        .data::<Arc<RequestMetrics>>()
        .cloned()
        .unwrap_or_default();
    let mode = req.data::<AccessLog>().copied().unwrap_or_default();
    let route = req
        .data::<AllowedMethods>()
        .and_then(|allowed| allowed.route_index(req.uri().path()));
    let id = request_id(&req, &metrics);
    // Kept only when a line may be written (the mode allows it and the log filter lets
    // `flux_inputs::access` info lines through).
    let logging = mode != AccessLog::Off
        && tracing::enabled!(target: "flux_inputs::access", tracing::Level::INFO);
    let line = logging.then(|| {
        (
            req.method().clone(),
            req.uri().path().to_owned(),
            crate::net::identity::peer(req.remote_addr()),
        )
    });
    let result = ep.call(req).await;
    let mut response = match result {
        Ok(response) => response.into_response(),
        Err(err) => super::error::render(err).await,
    };
    let status = response.status().as_u16();
    let seconds = started.elapsed().as_secs_f64();
    metrics.record(route, status, seconds);
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert("x-request-id", value);
    }
    if let Some((method, path, remote)) = line
        && (mode == AccessLog::All || status >= 400)
    {
        write_line(&id, &method, &path, &remote, status, seconds);
    }
    Ok(response)
}

/// The access line of a request the short way answered (`short_way`).
pub(super) fn log_request(id: &str, req: &Request, status: u16, seconds: f64) {
    if tracing::enabled!(target: "flux_inputs::access", tracing::Level::INFO) {
        let remote = crate::net::identity::peer(req.remote_addr());
        write_line(id, req.method(), req.uri().path(), &remote, status, seconds);
    }
}

fn write_line(
    id: &str,
    method: &poem::http::Method,
    path: &str,
    remote: &dyn std::fmt::Display,
    status: u16,
    seconds: f64,
) {
    tracing::info!(
        target: "flux_inputs::access",
        request_id = %id,
        %method,
        path = %path,
        status,
        duration_ms = seconds * 1000.0,
        remote = %remote,
        "request"
    );
}
