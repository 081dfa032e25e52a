//! `POST /api/v2/flux/clusters/{cluster_dns}/events`: a cluster's notification-controller
//! reports what its Flux did (README, "Flux reports back"). The body is one `fluxcd/pkg` event.
//!
//! Only 202, 400, 401, 403, 404, 413, 415 and 503: notification-controller does not retry a
//! 4xx, so a bad event is refused alone and never blocks the good ones behind it.

use std::collections::HashMap;

use poem::web::Data;
use poem_openapi::param::Path;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Enum, Object, OpenApi};
use serde::Deserialize;

use super::ApiTags;
use super::body::SerdeJson;
use super::error::{ErrorBody, ReadError};
use crate::auth::ReportAccess;
use crate::domain::names;
use crate::domain::report::{self, Severity};
use crate::error::AppError;
use crate::store::Store;
use crate::store::reports::{self, Report, StoredEvent};

pub struct ReportsApi;

/// Schemas another program defines: unknown fields are accepted (left open in the spec).
pub const OPEN_SCHEMAS: [&str; 2] = ["FluxEvent", "InvolvedObject"];

/// The object the event is about.
#[derive(Object, Deserialize, Clone, Debug)]
#[serde(rename_all = "camelCase")]
#[oai(rename_all = "camelCase")]
pub struct InvolvedObject {
    /// `HelmRelease`, `Kustomization`, `ResourceSet`, `ResourceSetInputProvider`, …
    #[oai(validator(min_length = 1, max_length = 63))]
    pub kind: String,
    #[oai(validator(min_length = 1, max_length = 253))]
    pub namespace: String,
    #[oai(validator(min_length = 1, max_length = 253))]
    pub name: String,
    pub uid: Option<String>,
    pub api_version: Option<String>,
    pub resource_version: Option<String>,
}

#[derive(Enum, Deserialize, Clone, Copy, Debug, PartialEq)]
#[serde(rename_all = "lowercase")]
#[oai(rename_all = "lowercase")]
pub enum EventSeverity {
    Info,
    Error,
}

/// One notification-controller event (`fluxcd/pkg` `apis/event/v1beta1` `Event`).
#[derive(Object, Deserialize, Clone, Debug)]
#[serde(rename_all = "camelCase")]
#[oai(rename_all = "camelCase")]
pub struct FluxEvent {
    pub involved_object: InvolvedObject,
    pub severity: EventSeverity,
    /// RFC 3339.
    pub timestamp: String,
    /// Up to 39,000 characters; the first 2 KiB are kept.
    pub message: String,
    /// `UpgradeSucceeded`, `UpgradeFailed`, `ReconciliationSucceeded`, …
    #[oai(validator(max_length = 256))]
    pub reason: String,
    /// `revision` (a HelmRelease's chart version), `component` (the catalog id, from the
    /// `event.toolkit.fluxcd.io/component` annotation or the Alert's `eventMetadata`), …
    #[serde(default)]
    pub metadata: Option<HashMap<String, String>>,
    pub reporting_controller: Option<String>,
    pub reporting_instance: Option<String>,
}

/// The answer to an accepted event.
#[derive(Object, Clone, Debug)]
pub struct Accepted {
    /// Always `true`: the event is saved (committed to the database).
    pub accepted: bool,
}

/// Errors of the events route: each refuses one event and nothing else.
#[derive(ApiResponse, Debug)]
pub enum EventError {
    /// Not a notification-controller event: malformed JSON, a missing or mistyped field, a
    /// timestamp that is not RFC 3339.
    #[oai(status = 400)]
    BadRequest(Json<ErrorBody>),
    /// Missing or wrong bearer token.
    #[oai(status = 401)]
    Unauthorized(Json<ErrorBody>, #[oai(header = "WWW-Authenticate")] String),
    /// Another cluster's scoped token, or a shared token while
    /// `events_require_cluster_identity` is set.
    #[oai(status = 403)]
    Forbidden(Json<ErrorBody>),
    /// No cluster with this DNS name.
    #[oai(status = 404)]
    NotFound(Json<ErrorBody>),
    /// The body is over 256 KiB.
    #[oai(status = 413)]
    PayloadTooLarge(Json<ErrorBody>),
    /// The body is not declared `application/json`.
    #[oai(status = 415)]
    UnsupportedMediaType(Json<ErrorBody>),
    /// A server fault; details are in the server log.
    #[oai(status = 500)]
    Internal(Json<ErrorBody>),
    /// The database is not ready, the event could not be saved, or too many events are
    /// waiting to be saved: retry (`Retry-After`).
    #[oai(status = 503)]
    Unavailable(Json<ErrorBody>),
}

impl From<AppError> for EventError {
    fn from(err: AppError) -> Self {
        match ReadError::from(err) {
            ReadError::BadRequest(body) => EventError::BadRequest(body),
            ReadError::Unauthorized(body, header) => EventError::Unauthorized(body, header),
            ReadError::Forbidden(body) => EventError::Forbidden(body),
            ReadError::NotFound(body) => EventError::NotFound(body),
            ReadError::Internal(body) => EventError::Internal(body),
            ReadError::Unavailable(body) => EventError::Unavailable(body),
        }
    }
}

#[derive(ApiResponse)]
pub enum EventResponse {
    /// Saved: the answer comes after the transaction holding the event committed (an older
    /// or repeated event changes nothing).
    #[oai(status = 202)]
    Accepted(Json<Accepted>),
}

/// Bodies above this are refused with 413 (notification-controller's messages stay far below).
pub const MAX_EVENT_BYTES: usize = 256 * 1024;

/// The event's time (Unix seconds), after checking what the types cannot say.
fn check(event: &FluxEvent) -> Result<i64, AppError> {
    let object = &event.involved_object;
    for (field, value, max) in [
        ("involvedObject.kind", &object.kind, 63),
        ("involvedObject.namespace", &object.namespace, 253),
        ("involvedObject.name", &object.name, 253),
    ] {
        if value.is_empty() || value.len() > max {
            return Err(AppError::BadRequest(format!(
                "{field}: must be 1 to {max} characters"
            )));
        }
    }
    if event.reason.len() > 256 {
        return Err(AppError::BadRequest(
            "reason: longer than 256 characters".into(),
        ));
    }
    let metadata = |key: &str| event.metadata.as_ref().and_then(|m| m.get(key));
    for key in ["revision", "component"] {
        if metadata(key).is_some_and(|v| v.len() > 253) {
            return Err(AppError::BadRequest(format!(
                "metadata.{key}: longer than 253 characters"
            )));
        }
    }
    // What is kept reaches terminals (`flux-inputs status`) and the console: no escape
    // sequences, no text that displays in another order than it is stored.
    let kept = [
        ("involvedObject.kind", Some(&object.kind), false),
        ("involvedObject.namespace", Some(&object.namespace), false),
        ("involvedObject.name", Some(&object.name), false),
        ("reason", Some(&event.reason), false),
        ("message", Some(&event.message), true),
        ("metadata.revision", metadata("revision"), false),
        ("metadata.component", metadata("component"), false),
    ];
    for (field, value, multiline) in kept {
        if let Some(bad) = value.and_then(|v| names::unprintable(v, multiline)) {
            return Err(AppError::BadRequest(format!(
                "{field}: contains the character U+{:04X}; event text must be printable",
                u32::from(bad)
            )));
        }
    }
    report::parse_timestamp(&event.timestamp).ok_or_else(|| {
        AppError::BadRequest(format!(
            "timestamp: '{}' is not an RFC 3339 time",
            report::truncate(&event.timestamp, 64)
        ))
    })
}

#[OpenApi(tag = "ApiTags::Status")]
impl ReportsApi {
    /// Receive one Flux event of a cluster
    ///
    /// For notification-controller's `generic` Provider. Authenticated by the cluster's own
    /// scoped token, the read token or the write token (`events_require_cluster_identity`
    /// allows only the first). The body is at most 256 KiB. Events are status, not
    /// inventory: no audit entry, no revision, no feed changes.
    #[oai(path = "/api/v2/flux/clusters/:cluster_dns/events", method = "post")]
    async fn receive(
        &self,
        auth: ReportAccess,
        store: Data<&Store>,
        /// The cluster's DNS name.
        cluster_dns: Path<String>,
        event: SerdeJson<FluxEvent>,
    ) -> Result<EventResponse, EventError> {
        let event = event.0;
        let received_at = store.clock().now();
        // A time ahead of the server's clock (a cluster's clock running fast, or a forged
        // 2099) counts as the time of receipt: it must not outrank the events that follow.
        let event_at = check(&event)?.min(received_at);
        // Unknown clusters are a 404; the feed cache answers without SQL.
        store.require_cluster(&cluster_dns).await?;
        let metadata = |key: &str| {
            event
                .metadata
                .as_ref()
                .and_then(|m| m.get(key))
                .filter(|v| !v.is_empty())
                .cloned()
        };
        let object = &event.involved_object;
        let severity = match event.severity {
            EventSeverity::Info => Severity::Info,
            EventSeverity::Error => Severity::Error,
        };
        let digest = reports::digest(&[
            &object.kind,
            &object.namespace,
            &object.name,
            severity.as_str(),
            &event.timestamp,
            &event.reason,
            &event.message,
            metadata("revision").as_deref().unwrap_or(""),
            metadata("component").as_deref().unwrap_or(""),
        ]);
        store
            .record_report(Report {
                cluster_dns: cluster_dns.0,
                event: StoredEvent {
                    event_at,
                    received_at,
                    via: auth.0,
                    kind: object.kind.clone(),
                    namespace: object.namespace.clone(),
                    name: object.name.clone(),
                    severity,
                    reason: event.reason.clone(),
                    message: report::truncate(&event.message, reports::MESSAGE_BYTES).to_owned(),
                    revision: metadata("revision"),
                    component: metadata("component"),
                },
                digest,
            })
            .await?;
        Ok(EventResponse::Accepted(Json(Accepted { accepted: true })))
    }
}
