//! The HTTP API: poem-openapi operations grouped by resource, combined into one service whose
//! spec is derived from these types (`app` mounts it beside the console). Reading order:
//! `flux.rs` (what Flux polls), the CRUD modules, `error.rs`.

pub mod audit;
pub mod body;
pub mod clusters;
pub mod components;
pub mod encoded;
pub mod error;
pub mod flux;
pub mod metrics;
pub mod namespaces;
pub mod observe;
pub mod overlays;
pub mod preview;
pub mod reports;
pub mod responses;
pub mod rolebindings;
pub mod rollouts;
pub mod service;
pub mod short_way;
pub mod status;
pub mod throttle;
pub mod tokens;
pub mod windows;

use poem_openapi::{OpenApiService, Tags};

use crate::config::ApiMode;

#[derive(Tags)]
pub enum ApiTags {
    /// ExternalService feeds polled by Flux Operator's ResourceSetInputProvider.
    Flux,
    /// Clusters and their assignments (crud mode).
    Clusters,
    /// The platform component catalog (crud mode).
    PlatformComponents,
    /// Namespace definitions (crud mode).
    Namespaces,
    /// Rolebinding definitions (crud mode).
    Rolebindings,
    /// Probes, metrics, poll status and this document.
    Service,
    /// What the clusters report: Flux events and convergence per component.
    Status,
    /// The audit trail and reverts (crud mode).
    Audit,
    /// Named read tokens (crud mode).
    Tokens,
    /// Progressive rollouts of a component over the fleet, in gated waves (crud mode).
    Rollouts,
    /// Values and assignments for every cluster a selector matches (crud mode).
    Overlays,
    /// Maintenance windows and freezes: when clusters may change (crud mode).
    Windows,
}

const TITLE: &str = "flux-inputs";

type ReadOnlyApis = (
    flux::FluxApi,
    reports::ReportsApi,
    service::ServiceApi,
    status::StatusApi,
);
type CrudApis = (
    flux::FluxApi,
    reports::ReportsApi,
    service::ServiceApi,
    status::StatusApi,
    audit::AuditApi,
    tokens::TokensApi,
    clusters::ClustersApi,
    components::PlatformComponentsApi,
    namespaces::NamespacesApi,
    rolebindings::RolebindingsApi,
    rollouts::RolloutsApi,
    overlays::OverlaysApi,
    windows::WindowsApi,
);

pub fn read_only_service() -> OpenApiService<ReadOnlyApis, ()> {
    OpenApiService::new(
        (
            flux::FluxApi,
            reports::ReportsApi,
            service::ServiceApi,
            status::StatusApi,
        ),
        TITLE,
        env!("CARGO_PKG_VERSION"),
    )
}

pub fn crud_service() -> OpenApiService<CrudApis, ()> {
    OpenApiService::new(
        (
            flux::FluxApi,
            reports::ReportsApi,
            service::ServiceApi,
            status::StatusApi,
            audit::AuditApi,
            tokens::TokensApi,
            clusters::ClustersApi,
            components::PlatformComponentsApi,
            namespaces::NamespacesApi,
            rolebindings::RolebindingsApi,
            rollouts::RolloutsApi,
            overlays::OverlaysApi,
            windows::WindowsApi,
        ),
        TITLE,
        env!("CARGO_PKG_VERSION"),
    )
}

/// The spec of the routes served in `mode`.
pub fn spec_yaml(mode: ApiMode) -> String {
    let json = match mode {
        ApiMode::ReadOnly => read_only_service().spec(),
        ApiMode::Crud => crud_service().spec(),
    };
    let mut document: serde_json::Value = serde_json::from_str(&json).unwrap_or_default();
    close_objects(&mut document["components"]["schemas"]);
    serde_yaml::to_string(&document).unwrap_or_default()
}

/// Every request object rejects unknown fields (`deny_unknown_fields`: a typo must not be
/// silently dropped) and responses never carry extra ones, but poem-openapi does not say so
/// in the schema. Declaring `additionalProperties: false` makes the spec tell the truth.
/// Maps (`labels`, `patches`) keep their own `additionalProperties`.
fn close_objects(schemas: &mut serde_json::Value) {
    if let Some(schemas) = schemas.as_object_mut() {
        for (name, schema) in schemas.iter_mut() {
            if reports::OPEN_SCHEMAS.contains(&name.as_str()) {
                continue;
            }
            if schema.get("properties").is_some() && schema.get("additionalProperties").is_none() {
                schema["additionalProperties"] = serde_json::Value::Bool(false);
            }
        }
    }
}
