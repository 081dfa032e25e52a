//! The whole application: the API and the console mounted side by side, and the middleware
//! every request passes (tokens before bodies, body limits, a replica's refusal of writes,
//! JSON errors, access log and metrics, protective headers); a good Flux poll and a liveness
//! probe take a short way past most of it (`api::short_way`). `server` serves what
//! `build_app` returns; tests drive it in process.

use std::sync::Arc;

use poem::http::Method;
use poem::middleware::CatchPanic;
use poem::{Endpoint, EndpointExt, IntoEndpoint, Request, Response, Route};

use crate::api::short_way::{self, ShortWay};
use crate::api::{self, error, observe, reports, service::SpecYaml, throttle};
use crate::auth::{self, Tokens};
use crate::config::{ApiMode, MAX_WRITE_BODY_BYTES};
use crate::store::Store;

/// The whole application: routes for `mode`, tokens, the store, JSON errors everywhere.
pub fn build_app(store: Store, tokens: Tokens, mode: ApiMode) -> impl Endpoint<Output = Response> {
    build_app_with_metrics(store, tokens, mode, Arc::default())
}

/// The same, recording request metrics into `requests` (shared with a metrics listener).
pub fn build_app_with_metrics(
    store: Store,
    tokens: Tokens,
    mode: ApiMode,
    requests: Arc<observe::RequestMetrics>,
) -> impl Endpoint<Output = Response> {
    let spec = SpecYaml(Arc::from(api::spec_yaml(mode)));
    let routes = match mode {
        ApiMode::ReadOnly => Route::new().nest("/", api::read_only_service()),
        ApiMode::Crud => Route::new().nest("/", api::crud_service()),
    }
    .nest("/ui", crate::console::routes());
    let allow = error::AllowedMethods::from_spec(&spec.0);
    requests.init(&allow);
    let short_way = ShortWay::new(store.clone(), tokens.clone(), requests.clone(), &allow);
    routes
        .around(limit_write_bodies)
        .around(auth::certificate_identity)
        .around(refuse_writes_on_a_replica)
        // Boxed: the middleware types nest past the compiler's recursion limit otherwise.
        .boxed()
        .around(error::add_allow_header)
        .around(observe::access_log)
        .data(allow)
        .data(requests)
        .data(store)
        .data(tokens)
        .data(spec)
        .data(crate::console::Sessions::default())
        .data(crate::console::catalog::UsageCache::default())
        .data(crate::console::ConsoleSettings {
            writable: mode == ApiMode::Crud,
        })
        // A good Flux poll or a liveness probe is answered here, past everything above it.
        .around(move |ep, req| short_way::short_way(ep, short_way.clone(), req))
        .boxed()
        .with(CatchPanic::new())
        .catch_all_error(error::render)
        .into_endpoint()
        .map_to_response()
        .around(throttle::limit_failed_auth)
        .data(throttle::FailedAuth::default())
        .around(protective_headers)
}

/// A replica answers every write with 405 naming its hub (README, "Edge replicas on Litestream"), before any token
/// or body is looked at.
async fn refuse_writes_on_a_replica<E: Endpoint>(
    ep: Arc<E>,
    req: Request,
) -> poem::Result<Response> {
    use poem::IntoResponse;
    use poem::http::{StatusCode, header};
    // Signing in and out of the console changes no inventory.
    let session = matches!(req.uri().path(), "/ui/login" | "/ui/logout");
    let writes = !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS) && !session;
    let refusal = req
        .data::<Store>()
        .and_then(|store| store.replica())
        .map(|copy| copy.refusal());
    match refusal {
        Some(message) if writes => {
            let mut response = poem_openapi::payload::Json(error::ErrorBody {
                error: "method_not_allowed".into(),
                message,
            })
            .with_status(StatusCode::METHOD_NOT_ALLOWED)
            .into_response();
            response
                .headers_mut()
                .insert(header::ALLOW, header::HeaderValue::from_static("GET, HEAD"));
            Ok(response)
        }
        _ => ep.call(req).await.map(IntoResponse::into_response),
    }
}

/// On every answer, errors included: nothing here may be cached by a proxy or a browser (a
/// new token's value, a cluster's inventory), and no body is ever sniffed as another type.
/// A `503` says when to retry; under TLS, HSTS.
async fn protective_headers<E: Endpoint<Output = Response>>(
    ep: Arc<E>,
    req: Request,
) -> poem::Result<Response> {
    use poem::http::header::{self, HeaderValue};
    let https = *req.scheme() == poem::http::uri::Scheme::HTTPS;
    let mut response = ep.call(req).await?;
    let headers = response.headers_mut();
    headers
        .entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if https {
        // Served over TLS: a browser must never fall back to plain HTTP for this host.
        headers.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000"),
        );
    }
    if response.status() == poem::http::StatusCode::SERVICE_UNAVAILABLE {
        response
            .headers_mut()
            .entry(header::RETRY_AFTER)
            .or_insert(HeaderValue::from_static("1"));
    }
    Ok(response)
}

/// For the operations that write: the token is checked before a byte of the body is read
/// (an unauthenticated client cannot make the server buffer bodies), then the body is read
/// with a size cap (413 above `MAX_WRITE_BODY_BYTES`) and a time limit (408). Other requests pass
/// through untouched: GETs carry no body, and unknown routes get their 404/405 unread.
async fn limit_write_bodies<E: Endpoint>(
    ep: std::sync::Arc<E>,
    mut req: Request,
) -> poem::Result<E::Output> {
    use poem::http::StatusCode;
    if matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS) {
        return ep.call(req).await;
    }
    let is_operation = req
        .data::<error::AllowedMethods>()
        .is_some_and(|allowed| allowed.allows(req.uri().path(), req.method().as_str()));
    if !is_operation {
        return ep.call(req).await;
    }
    let max_bytes = if auth::events_of(req.uri().path()).is_some() {
        // A cluster's events: its own token (or the read token), and a smaller body.
        let Some(presented) = bearer_token(&req) else {
            return Err(poem::Error::from_status(StatusCode::UNAUTHORIZED));
        };
        let bearer = poem_openapi::auth::Bearer {
            token: presented.to_owned(),
        };
        auth::check_report(&req, bearer).await?;
        reports::MAX_EVENT_BYTES
    } else {
        let authorized = req.data::<Tokens>().is_some_and(|tokens| {
            bearer_token(&req).is_some_and(|presented| tokens.allows_write(presented))
        });
        if !authorized {
            return Err(poem::Error::from_status(StatusCode::UNAUTHORIZED));
        }
        MAX_WRITE_BODY_BYTES
    };
    let limit = req
        .data::<crate::config::Limits>()
        .map_or(crate::config::Limits::default().body_timeout, |l| {
            l.body_timeout
        });
    let body = req.take_body();
    match tokio::time::timeout(limit, body.into_bytes_limit(max_bytes)).await {
        Ok(Ok(bytes)) => {
            req.set_body(bytes);
            ep.call(req).await
        }
        Ok(Err(poem::error::ReadBodyError::PayloadTooLarge)) => Err(poem::Error::from_string(
            format!("request body is larger than {max_bytes} bytes"),
            StatusCode::PAYLOAD_TOO_LARGE,
        )),
        Ok(Err(err)) => Err(poem::Error::from_string(
            format!("cannot read request body: {err}"),
            StatusCode::BAD_REQUEST,
        )),
        Err(_) => Err(poem::Error::from_string(
            format!(
                "the request body did not arrive within {} s",
                limit.as_secs()
            ),
            StatusCode::REQUEST_TIMEOUT,
        )),
    }
}

/// The token of an `Authorization: Bearer <token>` header.
fn bearer_token(req: &Request) -> Option<&str> {
    let value = req
        .headers()
        .get(poem::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}
