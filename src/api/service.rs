//! Probes and the spec: open to everyone, so they need no token (one is accepted).

use std::sync::Arc;

use poem::web::Data;
use poem_openapi::payload::{Json, PlainText};
use poem_openapi::{ApiResponse, Object, OpenApi};

use super::ApiTags;
use super::error::{ErrorBody, ReadError};
use super::observe::RequestMetrics;
use crate::auth::ReadAccess;
use crate::store::Store;
use crate::store::migrate::{SCHEMA_VERSION, schema_version};

pub struct ServiceApi;

/// The spec as served, computed once at start-up.
#[derive(Clone)]
pub struct SpecYaml(pub Arc<str>);

#[derive(Object)]
pub struct Status {
    /// Always `ok`.
    pub status: String,
}

fn ok() -> Json<Status> {
    Json(Status {
        status: "ok".into(),
    })
}

#[derive(ApiResponse)]
pub enum HealthResponse {
    /// The process is serving.
    #[oai(status = 200)]
    Ok(Json<Status>),
}

#[derive(ApiResponse)]
pub enum ReadyResponse {
    /// The database answers and its schema is current.
    #[oai(status = 200)]
    Ok(Json<Status>),
    /// Not ready; the message says why.
    #[oai(status = 503)]
    Unavailable(Json<ErrorBody>),
}

#[derive(ApiResponse)]
pub enum MetricsResponse {
    /// Prometheus text exposition format.
    #[oai(
        status = 200,
        content_type = "text/plain; version=0.0.4; charset=utf-8"
    )]
    Ok(PlainText<String>),
}

#[derive(ApiResponse)]
pub enum SpecResponse {
    /// The OpenAPI 3.0 document of this service, derived from its code.
    #[oai(status = 200, content_type = "application/yaml")]
    Ok(PlainText<String>),
}

#[OpenApi(tag = "ApiTags::Service")]
impl ServiceApi {
    /// Liveness probe
    #[oai(path = "/health", method = "get")]
    async fn health(&self) -> HealthResponse {
        HealthResponse::Ok(ok())
    }

    /// Readiness probe: the database answers a query and its schema is current
    #[oai(path = "/ready", method = "get")]
    async fn ready(&self, store: Data<&Store>) -> ReadyResponse {
        // A replica is ready while it serves a consistent copy, however old (a stale feed is
        // better for Flux than none); `/status/replica` says how old.
        if let Some(copy) = store.replica() {
            let status = copy.status();
            return match (status.loaded_at, status.last_error) {
                (Some(_), _) => ReadyResponse::Ok(ok()),
                (None, error) => unavailable(format!(
                    "no consistent copy of the inventory loaded yet{}",
                    error.map(|e| format!(": {e}")).unwrap_or_default()
                )),
            };
        }
        if let Err(err) = store.ensure_file() {
            return unavailable(err.to_string());
        }
        match store.read(schema_version).await {
            Ok(SCHEMA_VERSION) => ReadyResponse::Ok(ok()),
            Ok(version) => unavailable(format!(
                "database schema is version {version}, this binary needs {SCHEMA_VERSION}"
            )),
            Err(err) => unavailable(format!("database unavailable: {err}")),
        }
    }

    /// Prometheus metrics
    ///
    /// Requests by route and status, latency, the database pool, the feed cache, inventory
    /// counts, the last write, clusters per component and state, stale clusters. Also served
    /// without a token on `metrics_addr` when that is set.
    #[oai(path = "/metrics", method = "get")]
    async fn metrics(
        &self,
        _auth: ReadAccess,
        store: Data<&Store>,
        requests: Data<&Arc<RequestMetrics>>,
        /// Also a series per cluster: its last poll per feed, whether it is stale.
        #[oai(default)]
        per_cluster: poem_openapi::param::Query<bool>,
    ) -> Result<MetricsResponse, ReadError> {
        Ok(MetricsResponse::Ok(PlainText(
            super::metrics::render(&store, &requests, per_cluster.0).await,
        )))
    }

    /// This OpenAPI document
    #[oai(path = "/openapi.yaml", method = "get")]
    async fn spec(&self, spec: Data<&SpecYaml>) -> SpecResponse {
        SpecResponse::Ok(PlainText(spec.0.0.to_string()))
    }
}

fn unavailable(message: String) -> ReadyResponse {
    tracing::warn!(%message, "not ready");
    ReadyResponse::Unavailable(Json(ErrorBody {
        error: "service_unavailable".into(),
        message,
    }))
}
