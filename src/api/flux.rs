//! The ExternalService feeds Flux Operator polls.
//!
//! An unknown cluster is a 404, never `{"inputs": []}`: an empty list makes Flux prune
//! everything it rendered from the provider, while any non-2xx keeps its last good inputs.

use poem::web::Data;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, OpenApi};

use super::ApiTags;
use super::auth::ReadAccess;
use super::error::ReadError;
use crate::domain::feed::{
    ClusterListInput, FluxInputs, NamespaceInput, PlatformComponentInput, RolebindingInput,
};
use crate::domain::merge::{self, DanglingReference};
use crate::domain::model::{Cluster, Environment};
use crate::error::{AppError, Result};
use crate::store::clusters::{self, ClusterFilter};
use crate::store::{Page, Store, components, namespaces, rolebindings};

pub struct FluxApi;

#[derive(ApiResponse)]
pub enum PlatformComponentsFeed {
    /// The cluster's platform components, catalog defaults merged with its overrides.
    #[oai(status = 200)]
    Ok(Json<FluxInputs<PlatformComponentInput>>),
}

#[derive(ApiResponse)]
pub enum NamespacesFeed {
    /// The cluster's namespaces.
    #[oai(status = 200)]
    Ok(Json<FluxInputs<NamespaceInput>>),
}

#[derive(ApiResponse)]
pub enum RolebindingsFeed {
    /// The cluster's rolebindings.
    #[oai(status = 200)]
    Ok(Json<FluxInputs<RolebindingInput>>),
}

#[derive(ApiResponse)]
pub enum ClusterListFeed {
    /// Every cluster (or the selected shard), ordered by id.
    #[oai(status = 200)]
    Ok(Json<FluxInputs<ClusterListInput>>),
}

/// Loads the cluster a feed is for, or the 404 Flux must see for an unknown one.
fn cluster_by_dns(conn: &rusqlite::Connection, cluster_dns: &str) -> Result<Cluster> {
    clusters::get_by_dns(conn, cluster_dns)?
        .ok_or_else(|| AppError::NotFound(format!("no cluster with cluster_dns '{cluster_dns}'")))
}

fn dangling(err: DanglingReference) -> AppError {
    AppError::Internal(err.to_string())
}

#[OpenApi(tag = "ApiTags::Flux")]
impl FluxApi {
    /// Platform components of one cluster
    #[oai(
        path = "/api/v2/flux/clusters/:cluster_dns/platform-components",
        method = "get"
    )]
    async fn platform_components(
        &self,
        _auth: ReadAccess,
        store: Data<&Store>,
        /// The cluster's DNS name.
        cluster_dns: Path<String>,
    ) -> Result<PlatformComponentsFeed, ReadError> {
        let inputs = store
            .read(move |conn| {
                let cluster = cluster_by_dns(conn, &cluster_dns)?;
                let ids = cluster.platform_components.iter().map(|r| r.id.as_str());
                let catalog = components::get_many(conn, ids)?;
                merge::platform_components(&cluster, &catalog).map_err(dangling)
            })
            .await?;
        Ok(PlatformComponentsFeed::Ok(Json(FluxInputs { inputs })))
    }

    /// Namespaces of one cluster
    #[oai(path = "/api/v2/flux/clusters/:cluster_dns/namespaces", method = "get")]
    async fn namespaces(
        &self,
        _auth: ReadAccess,
        store: Data<&Store>,
        /// The cluster's DNS name.
        cluster_dns: Path<String>,
    ) -> Result<NamespacesFeed, ReadError> {
        let inputs = store
            .read(move |conn| {
                let cluster = cluster_by_dns(conn, &cluster_dns)?;
                let definitions =
                    namespaces::get_many(conn, cluster.namespaces.iter().map(|r| r.id.as_str()))?;
                merge::namespaces(&cluster, &definitions).map_err(dangling)
            })
            .await?;
        Ok(NamespacesFeed::Ok(Json(FluxInputs { inputs })))
    }

    /// Rolebindings of one cluster
    #[oai(
        path = "/api/v2/flux/clusters/:cluster_dns/rolebindings",
        method = "get"
    )]
    async fn rolebindings(
        &self,
        _auth: ReadAccess,
        store: Data<&Store>,
        /// The cluster's DNS name.
        cluster_dns: Path<String>,
    ) -> Result<RolebindingsFeed, ReadError> {
        let inputs = store
            .read(move |conn| {
                let cluster = cluster_by_dns(conn, &cluster_dns)?;
                let definitions = rolebindings::get_many(
                    conn,
                    cluster.rolebindings.iter().map(|r| r.id.as_str()),
                )?;
                merge::rolebindings(&cluster, &definitions).map_err(dangling)
            })
            .await?;
        Ok(RolebindingsFeed::Ok(Json(FluxInputs { inputs })))
    }

    /// All clusters, for management-cluster provisioners
    ///
    /// `environment`, `limit` and `offset` select a shard: Flux sends the provider URL
    /// verbatim, so a large fleet is polled with one provider per shard.
    #[oai(path = "/api/v2/flux/clusters", method = "get")]
    async fn clusters(
        &self,
        _auth: ReadAccess,
        store: Data<&Store>,
        /// Only clusters of this environment tier.
        environment: Query<Option<Environment>>,
        /// At most this many clusters.
        limit: Query<Option<u32>>,
        /// Skip this many clusters (after filtering, ordered by id).
        offset: Query<Option<u32>>,
    ) -> Result<ClusterListFeed, ReadError> {
        let filter = ClusterFilter {
            cluster_dns: None,
            environment: environment.0,
            page: Page {
                limit: limit.0,
                offset: offset.0,
            },
        };
        let inputs = store
            .read(move |conn| {
                Ok(clusters::list_headers(conn, &filter)?
                    .iter()
                    .map(merge::cluster_list_entry)
                    .collect())
            })
            .await?;
        Ok(ClusterListFeed::Ok(Json(FluxInputs { inputs })))
    }
}
