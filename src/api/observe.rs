//! One access line per request (with a request id, never a header value), and the request
//! metrics Prometheus scrapes from `/metrics`.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use poem::http::HeaderValue;
use poem::{Endpoint, IntoResponse, Request, Response};

use super::error::AllowedMethods;

/// Latency histogram buckets, in seconds.
const BUCKETS: [f64; 11] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
];

/// Request counters and latency histograms by route (the spec's path template).
#[derive(Default)]
pub struct RequestMetrics {
    counts: Mutex<HashMap<(Arc<str>, u16), u64>>,
    latency: Mutex<HashMap<Arc<str>, Histogram>>,
    next_id: AtomicU64,
}

#[derive(Default, Clone)]
struct Histogram {
    buckets: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

impl RequestMetrics {
    fn record(&self, route: &Arc<str>, status: u16, seconds: f64) {
        *self
            .counts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry((route.clone(), status))
            .or_default() += 1;
        let mut latency = self.latency.lock().unwrap_or_else(|e| e.into_inner());
        let histogram = latency.entry(route.clone()).or_default();
        for (bucket, bound) in histogram.buckets.iter_mut().zip(BUCKETS) {
            if seconds <= bound {
                *bucket += 1;
            }
        }
        histogram.count += 1;
        histogram.sum += seconds;
    }

    /// Prometheus text exposition of the request metrics.
    pub fn render(&self, out: &mut String) {
        let counts = self
            .counts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let mut counts: Vec<_> = counts.into_iter().collect();
        counts.sort();
        out.push_str("# HELP flux_inputs_requests_total HTTP requests by route and status.\n");
        out.push_str("# TYPE flux_inputs_requests_total counter\n");
        for ((route, status), count) in counts {
            let _ = writeln!(
                out,
                "flux_inputs_requests_total{{route=\"{route}\",status=\"{status}\"}} {count}"
            );
        }
        let latency = self
            .latency
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let mut latency: Vec<_> = latency.into_iter().collect();
        latency.sort_by(|a, b| a.0.cmp(&b.0));
        out.push_str("# HELP flux_inputs_request_duration_seconds Time to answer, by route.\n");
        out.push_str("# TYPE flux_inputs_request_duration_seconds histogram\n");
        for (route, h) in latency {
            for (bound, count) in BUCKETS.iter().zip(h.buckets) {
                let _ = writeln!(
                    out,
                    "flux_inputs_request_duration_seconds_bucket{{route=\"{route}\",le=\"{bound}\"}} {count}"
                );
            }
            let _ = writeln!(
                out,
                "flux_inputs_request_duration_seconds_bucket{{route=\"{route}\",le=\"+Inf\"}} {}",
                h.count
            );
            let _ = writeln!(
                out,
                "flux_inputs_request_duration_seconds_sum{{route=\"{route}\"}} {}",
                h.sum
            );
            let _ = writeln!(
                out,
                "flux_inputs_request_duration_seconds_count{{route=\"{route}\"}} {}",
                h.count
            );
        }
    }
}

/// Seconds since the epoch, for timestamps in metrics and status.
pub fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or_default()
}

/// A request id: the client's `X-Request-Id` when it is short and printable, else a new one.
fn request_id(req: &Request, metrics: &RequestMetrics) -> String {
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

/// Logs one line per request and records its metrics.
pub async fn access_log<E: Endpoint>(ep: Arc<E>, req: Request) -> poem::Result<Response> {
    let started = Instant::now();
    let metrics = req
        .data::<Arc<RequestMetrics>>()
        .cloned()
        .unwrap_or_default();
    let route: Arc<str> = req
        .data::<AllowedMethods>()
        .and_then(|allowed| allowed.template_for(req.uri().path()))
        .unwrap_or_else(|| Arc::from("other"));
    let id = request_id(&req, &metrics);
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let remote = req.remote_addr().to_string();
    let result = ep.call(req).await;
    let mut response = match result {
        Ok(response) => response.into_response(),
        Err(err) => super::error::render(err).await,
    };
    let status = response.status().as_u16();
    let seconds = started.elapsed().as_secs_f64();
    metrics.record(&route, status, seconds);
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert("x-request-id", value);
    }
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
    Ok(response)
}
