//! Every error leaves as `{"error": "<code>", "message": "<text>"}` (flux-resourceset's body),
//! whether a handler returned it or poem produced it (bad JSON, unknown route, wrong method).

use std::sync::Arc;

use poem::http::{StatusCode, header};
use poem::{IntoResponse, Response};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object};

use crate::error::AppError;

/// The error body of every non-2xx answer.
#[derive(Object, Debug, Clone, PartialEq)]
pub struct ErrorBody {
    /// Machine-readable code: `unauthorized`, `not_found`, `bad_request`, `validation_error`,
    /// `conflict`, `payload_too_large`, `service_unavailable`, `internal_error`.
    pub error: String,
    /// What went wrong, naming the field or id at fault.
    pub message: String,
}

fn body(error: &str, message: impl Into<String>) -> Json<ErrorBody> {
    Json(ErrorBody {
        error: error.into(),
        message: message.into(),
    })
}

/// Errors of write operations.
#[derive(ApiResponse, Debug)]
pub enum WriteError {
    /// Malformed request: invalid JSON, a wrong type, a missing field, an id mismatch.
    #[oai(status = 400)]
    BadRequest(Json<ErrorBody>),
    /// Missing or wrong bearer token (the write token is needed).
    #[oai(status = 401)]
    Unauthorized(Json<ErrorBody>, #[oai(header = "WWW-Authenticate")] String),
    /// No resource with this id.
    #[oai(status = 404)]
    NotFound(Json<ErrorBody>),
    /// The id or `cluster_dns` exists already, or the resource is still referenced; or
    /// (`blast_radius`) the write would empty a feed or shrink feeds on more clusters than
    /// `max_clusters_shrunk` and carries no matching `?confirm=`; or (`window_closed`) it
    /// changes the feeds of clusters a maintenance window closes and carries no matching
    /// `?confirm_closed=`.
    #[oai(status = 409)]
    Conflict(Json<ErrorBody>),
    /// `If-Match` names a revision that is no longer current: reload and retry.
    #[oai(status = 412)]
    PreconditionFailed(Json<ErrorBody>),
    /// The request body is over 1 MiB.
    #[oai(status = 413)]
    PayloadTooLarge(Json<ErrorBody>),
    /// The request body is not `application/json`.
    #[oai(status = 415)]
    UnsupportedMediaType(Json<ErrorBody>),
    /// Well-formed but breaks an inventory rule: unknown reference, bad name, dependency cycle.
    #[oai(status = 422)]
    Unprocessable(Json<ErrorBody>),
    /// A server fault; details are in the server log.
    #[oai(status = 500)]
    Internal(Json<ErrorBody>),
    /// The database is busy or not ready; retry.
    #[oai(status = 503)]
    Unavailable(Json<ErrorBody>),
}

/// Errors of read operations.
#[derive(ApiResponse, Debug)]
pub enum ReadError {
    /// A malformed query parameter.
    #[oai(status = 400)]
    BadRequest(Json<ErrorBody>),
    /// Missing or wrong bearer token.
    #[oai(status = 401)]
    Unauthorized(Json<ErrorBody>, #[oai(header = "WWW-Authenticate")] String),
    /// A cluster-scoped token asked for something other than its cluster's feeds.
    #[oai(status = 403)]
    Forbidden(Json<ErrorBody>),
    /// No such cluster or resource.
    #[oai(status = 404)]
    NotFound(Json<ErrorBody>),
    /// A server fault; details are in the server log.
    #[oai(status = 500)]
    Internal(Json<ErrorBody>),
    /// The database is busy or not ready; Flux keeps its last good inputs and retries.
    #[oai(status = 503)]
    Unavailable(Json<ErrorBody>),
}

const INTERNAL_MESSAGE: &str = "internal server error; see the server log";

impl From<AppError> for WriteError {
    fn from(err: AppError) -> Self {
        match err {
            AppError::BadRequest(m) => WriteError::BadRequest(body("bad_request", m)),
            AppError::NotFound(m) => WriteError::NotFound(body("not_found", m)),
            AppError::Conflict(m) => WriteError::Conflict(body("conflict", m)),
            AppError::BlastRadius(m) => WriteError::Conflict(body("blast_radius", m)),
            AppError::WindowClosed(m) => WriteError::Conflict(body("window_closed", m)),
            AppError::Validation(m) => WriteError::Unprocessable(body("validation_error", m)),
            AppError::PreconditionFailed(m) => {
                WriteError::PreconditionFailed(body("precondition_failed", m))
            }
            AppError::Unavailable(m) => WriteError::Unavailable(body("service_unavailable", m)),
            AppError::Internal(m) => {
                tracing::error!(error = %m, "request failed");
                WriteError::Internal(body("internal_error", INTERNAL_MESSAGE))
            }
        }
    }
}

impl From<AppError> for ReadError {
    fn from(err: AppError) -> Self {
        match err {
            AppError::BadRequest(m) => ReadError::BadRequest(body("bad_request", m)),
            AppError::NotFound(m) => ReadError::NotFound(body("not_found", m)),
            AppError::Unavailable(m) => ReadError::Unavailable(body("service_unavailable", m)),
            // A read cannot conflict or fail validation; if one does, the store is at fault.
            AppError::Conflict(m)
            | AppError::BlastRadius(m)
            | AppError::WindowClosed(m)
            | AppError::Validation(m)
            | AppError::PreconditionFailed(m)
            | AppError::Internal(m) => {
                tracing::error!(error = %m, "read failed");
                ReadError::Internal(body("internal_error", INTERNAL_MESSAGE))
            }
        }
    }
}

/// The error code for a status poem produced on its own.
fn code_for(status: StatusCode) -> &'static str {
    match status {
        StatusCode::UNAUTHORIZED => "unauthorized",
        StatusCode::FORBIDDEN => "forbidden",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::REQUEST_TIMEOUT => "request_timeout",
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::CONFLICT => "conflict",
        StatusCode::PRECONDITION_FAILED => "precondition_failed",
        StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
        StatusCode::UNPROCESSABLE_ENTITY => "validation_error",
        StatusCode::SERVICE_UNAVAILABLE => "service_unavailable",
        s if s.is_server_error() => "internal_error",
        _ => "bad_request",
    }
}

/// The JSON error response for any `poem::Error` (installed with `catch_all_error`).
pub async fn render(err: poem::Error) -> Response {
    if err.is_from_response() {
        // Already one of our ApiResponse errors.
        return err.into_response();
    }
    let status = err.status();
    let message = match status {
        StatusCode::UNAUTHORIZED => {
            "a valid bearer token is required (Authorization: Bearer <token>)".to_owned()
        }
        StatusCode::METHOD_NOT_ALLOWED => "method not allowed on this path".to_owned(),
        StatusCode::NOT_FOUND => "no such route".to_owned(),
        s if s.is_server_error() => {
            tracing::error!(error = %err, "request failed");
            INTERNAL_MESSAGE.to_owned()
        }
        _ => err.to_string(),
    };
    let mut response = Json(ErrorBody {
        error: code_for(status).into(),
        message,
    })
    .with_status(status)
    .into_response();
    if status == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer"),
        );
    }
    response
}

/// The methods each path of the spec allows, for the `Allow` header RFC 9110 requires on 405;
/// also names the route of a request for metrics.
#[derive(Clone, Default)]
pub struct AllowedMethods(Arc<Vec<Route>>);

struct Route {
    segments: Vec<String>,
    allow: String,
    template: Arc<str>,
}

impl AllowedMethods {
    pub fn from_spec(spec_yaml: &str) -> Self {
        let document: serde_yaml::Value = serde_yaml::from_str(spec_yaml).unwrap_or_default();
        let mut table = Vec::new();
        if let Some(paths) = document["paths"].as_mapping() {
            for (path, item) in paths {
                let (Some(path), Some(item)) = (path.as_str(), item.as_mapping()) else {
                    continue;
                };
                let mut methods: Vec<String> = item
                    .keys()
                    .filter_map(|m| m.as_str())
                    .map(str::to_ascii_uppercase)
                    .collect();
                if methods.iter().any(|m| m == "GET") {
                    methods.push("HEAD".into());
                }
                table.push(Route {
                    segments: path.split('/').map(str::to_owned).collect(),
                    allow: methods.join(", "),
                    template: path.into(),
                });
            }
        }
        AllowedMethods(Arc::new(table))
    }

    /// The position of the spec route matching `path` (`{param}` matches one segment);
    /// allocates nothing, as it runs on every request.
    pub fn route_index(&self, path: &str) -> Option<usize> {
        let count = path.split('/').count();
        self.0.iter().position(|route| {
            route.segments.len() == count
                && route
                    .segments
                    .iter()
                    .zip(path.split('/'))
                    .all(|(t, s)| t.starts_with('{') || t == s)
        })
    }

    fn route(&self, path: &str) -> Option<&Route> {
        self.route_index(path).map(|i| &self.0[i])
    }

    /// Every route's path template, in `route_index` order.
    pub fn templates(&self) -> impl Iterator<Item = Arc<str>> + '_ {
        self.0.iter().map(|route| route.template.clone())
    }

    /// Whether the spec has an operation for this method on this path.
    pub fn allows(&self, path: &str, method: &str) -> bool {
        self.route(path)
            .is_some_and(|route| route.allow.split(", ").any(|m| m == method))
    }

    fn for_path(&self, path: &str) -> Option<&str> {
        self.route(path).map(|route| route.allow.as_str())
    }

    /// The spec's path template matching `path`, e.g. `/clusters/{id}`.
    pub fn template_for(&self, path: &str) -> Option<Arc<str>> {
        self.route(path).map(|route| route.template.clone())
    }
}

/// Adds `Allow` to 405 answers.
pub async fn add_allow_header<E: poem::Endpoint>(
    ep: std::sync::Arc<E>,
    req: poem::Request,
) -> poem::Result<Response> {
    let path = req.uri().path().to_owned();
    let allowed = req.data::<AllowedMethods>().cloned().unwrap_or_default();
    match ep.call(req).await {
        Ok(output) => Ok(output.into_response()),
        Err(err) if err.status() == StatusCode::METHOD_NOT_ALLOWED => {
            let mut response = render(err).await;
            if let Some(value) = allowed
                .for_path(&path)
                .and_then(|a| header::HeaderValue::from_str(a).ok())
            {
                response.headers_mut().insert(header::ALLOW, value);
            }
            Ok(response)
        }
        Err(err) => Err(err),
    }
}
